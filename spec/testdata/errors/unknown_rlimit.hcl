daemon "api" {
  command = ["/bin/api"]
  rlimits = { nofiles = 1024 } # ERROR: Unknown resource limit
}
