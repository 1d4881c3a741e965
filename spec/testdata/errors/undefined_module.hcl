daemon "api" {
  command = ["/bin/api"]
  env     = { C = module.compress.name } # ERROR: Reference to undeclared module
}
