daemon "api" {
  count   = "x" # ERROR: Invalid count
  command = ["/bin/api"]
}
