daemon "db" {
  command = ["/bin/db"]
  stop {
    timeout = "10" # ERROR: Invalid duration
  }
}

daemon "api" {
  command = ["/bin/api"]
  env     = { DB = daemon.db.address }
}
