daemon "api" {
  command = ["/bin/api", foo.bar] # ERROR: Unknown reference
}
