daemon "api" {
  count   = 2
  command = ["/bin/api"]
  service {
    port = 65535 + count.index # ERROR: Invalid port
  }
}
