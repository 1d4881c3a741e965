daemon "api" {
  command = ["/bin/api"]
  service {
    port  = 8080
    route = "app.localhost/"
  }
}

daemon "web" {
  command = ["/bin/web"]
  service { # ERROR: Route claimed twice
    port  = 8081
    route = "app.localhost"
  }
}
