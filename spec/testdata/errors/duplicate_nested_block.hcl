daemon "api" {
  command = ["/bin/api"]
  restart {
    policy = "always"
  }
  restart { # ERROR: Duplicate restart block
    policy = "never"
  }
}
