runtime "docker" "local" {}

daemon "db" { # ERROR: Missing required argument
  runtime = runtime.docker.local
}
