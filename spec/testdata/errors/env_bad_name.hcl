daemon "api" {
  command = ["/bin/api"]
  env     = { "A=B" = "x" } # ERROR: Invalid environment variable name
}
