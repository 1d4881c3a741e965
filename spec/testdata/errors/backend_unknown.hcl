orch {
  backend "consul" { # ERROR: Unknown backend
    endpoints = ["127.0.0.1:8500"]
  }
}

daemon "api" {
  command = ["/bin/api"]
}
