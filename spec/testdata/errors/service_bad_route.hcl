daemon "api" {
  command = ["/bin/api"]
  service {
    port  = 8080
    route = "http://api.localhost:8080/" # ERROR: Invalid route
  }
}
