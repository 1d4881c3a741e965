daemon "api" {
  count   = -1 # ERROR: Invalid count
  command = ["/bin/api"]
}
