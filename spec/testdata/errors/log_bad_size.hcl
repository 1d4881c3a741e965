daemon "api" {
  command = ["/bin/api"]
  log {
    max_size = "10 parsecs" # ERROR: Invalid size
  }
}
