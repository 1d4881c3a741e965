daemon "api" {
  command = ["/bin/api"]
  health { # ERROR: Conflicting health probes
    notify = true
    tcp    = "127.0.0.1:80"
  }
}

daemon "web" {
  command = ["/bin/web"]
  health {
    http     = "http://127.0.0.1:80/"
    watchdog = "10s" # ERROR: Watchdog without notify
  }
}
