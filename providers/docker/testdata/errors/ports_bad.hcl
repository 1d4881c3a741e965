runtime "docker" "local" {}

daemon "web" {
  runtime = runtime.docker.local
  image   = "example/web:1"
  ports = [
    "8080:80",
    "127.0.0.1:8081:80/tcp",
    "8082", # ERROR: Invalid port mapping
    "8083:80/http", # ERROR: Invalid port mapping
  ]
}

daemon "api" {
  runtime = runtime.docker.local
  image   = "example/api:1"
  ports   = ["70000:80"] # ERROR: Invalid port mapping
}

daemon "dns" {
  runtime = runtime.docker.local
  image   = "example/dns:1"
  ports   = ["localhost:5353:53/udp"] # ERROR: Invalid port mapping
}
