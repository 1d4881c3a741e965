daemon "api" {
  command = [""] # ERROR: Empty command
}
