daemon "api" {
  command = "x" # ERROR: Incorrect attribute value type
}
