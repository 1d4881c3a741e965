daemon "api" {
  command = ["/bin/api"] @ # ERROR: Invalid character
}
