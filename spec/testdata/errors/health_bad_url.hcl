daemon "api" {
  command = ["/bin/api"]
  health {
    http = "ftp://127.0.0.1/x" # ERROR: Invalid health URL
  }
}
