daemon "api" {
  command = ["/bin/api"]
  restart {
    backoff = "-1s" # ERROR: Invalid duration
  }
}
