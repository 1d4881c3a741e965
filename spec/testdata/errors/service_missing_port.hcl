daemon "api" {
  command = ["/bin/api"]
  service { # ERROR: Missing required argument
    route = "api.localhost/"
  }
}
