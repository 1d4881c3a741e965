daemon "api" {
  command = ["/bin/api"]
  health {
    notify = true
    tcp    = "127.0.0.1:80" # ERROR: Conflicting health probes
  }
}

daemon "web" {
  command = ["/bin/web"]
  health {
    http     = "http://127.0.0.1:80/"
    watchdog = "10s" # ERROR: Watchdog without notify
  }
}
