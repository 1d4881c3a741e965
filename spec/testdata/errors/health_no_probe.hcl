daemon "api" {
  command = ["/bin/api"]
  health { # ERROR: Health check without a probe
    interval = "1s"
  }
}
