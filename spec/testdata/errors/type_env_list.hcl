daemon "api" {
  command = ["/bin/api"]
  env     = ["a"] # ERROR: Incorrect attribute value type
}
