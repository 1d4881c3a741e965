runtime "dokcer" "local" {} # ERROR: Unknown runtime kind

daemon "db" {
  runtime = runtime.dokcer.local
  image   = "postgres:16"
}
