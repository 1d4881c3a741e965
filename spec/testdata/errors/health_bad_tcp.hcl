daemon "api" {
  command = ["/bin/api"]
  health {
    tcp = "localhost" # ERROR: Invalid health address
  }
}
