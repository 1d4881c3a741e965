daemon "api" {
  command      = ["/bin/api"]
  restart_with = [daemon.cache] # ERROR: Reference to undeclared daemon
}
