daemon "api" {
  command = ["/bin/api"]
  health {
    tcp      = "127.0.0.1:8080"
    interval = "0s" # ERROR: Invalid duration
  }
}
