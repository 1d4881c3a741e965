runtime "docker" "local" {}

daemon "web" { # ERROR: Missing required argument
  runtime = runtime.docker.local
  ports   = ["8080:80"]
}

daemon "ui" {
  runtime = runtime.docker.local
  build { # ERROR: Missing required argument
    contxt = "./api" # ERROR: Unsupported argument
  }
}
