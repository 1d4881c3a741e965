daemon "api" {
  command = ["/bin/api"]
  env     = { SELF = daemon.api.address } # ERROR: Self-referential block
}
