daemon "api" {
  command = ["/bin/api"]
  service {
    port = 8080
  }
}

daemon "api2" {
  command = ["/bin/api"]
  service { # ERROR: Service name claimed twice
    name = "api"
    port = 8081
  }
}
