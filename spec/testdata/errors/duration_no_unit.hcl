daemon "api" {
  command = ["/bin/api"]
  stop {
    timeout = "5" # ERROR: Invalid duration
  }
}
