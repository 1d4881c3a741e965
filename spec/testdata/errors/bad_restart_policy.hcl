daemon "api" {
  command = ["/bin/api"]
  restart {
    policy = "alway" # ERROR: Invalid restart policy
  }
}
