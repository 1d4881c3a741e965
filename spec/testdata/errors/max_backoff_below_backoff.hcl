daemon "api" {
  command = ["/bin/api"]
  restart {
    backoff     = "10s"
    max_backoff = "1s" # ERROR: Invalid backoff
  }
}
