daemon "api" {
  command = ["/bin/api"]
  health {
    http = "http://127.0.0.1:8080/healthz"
    tcp  = "127.0.0.1:8080" # ERROR: Conflicting health probes
  }
}
