# FILES: api/ api/Dockerfile notadir
runtime "docker" "local" {}

job "seed" {
  runtime = runtime.docker.local
  build {
    context = "./nowhere" # ERROR: Build context not found
  }
}

daemon "api" {
  runtime = runtime.docker.local
  build {
    context    = "./api"
    dockerfile = "Containerfile" # ERROR: Dockerfile not found
  }
}

daemon "file" {
  runtime = runtime.docker.local
  build {
    context = "notadir" # ERROR: Build context not found
  }
}

daemon "escape" {
  runtime = runtime.docker.local
  build {
    context    = "./api"
    dockerfile = "../Dockerfile" # ERROR: Dockerfile not found
  }
}

daemon "ok" {
  runtime = runtime.docker.local
  image   = "example/ok:1"
  build {
    context = "./api"
  }
}
