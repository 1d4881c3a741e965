daemon "api" {
  command = ["/bin/api"]
  env     = { DB = daemon.db.name } # ERROR: Reference to undeclared daemon
}
