daemon "api" {
  command = ["/bin/api"]
  env     = { H = runtime.docker.remote.name } # ERROR: Reference to undeclared runtime
}
