runtime "docker" "local" {}

daemon "db" {
  runtime = runtime.docker.locl # ERROR: Reference to undeclared runtime
  image   = "postgres:16"
}
