runtime "docker" "local" {}

daemon "db" {
  runtime = "docker" # ERROR: Invalid runtime reference
  image   = "postgres:16"
}
