daemon "api" {
  command = ["/bin/api"]
  health {
    tcp      = "127.0.0.1:80"
    interval = "abc" # ERROR: Invalid duration
  }
}
