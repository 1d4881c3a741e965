job "migrate" {
  command = ["/bin/migrate"]
  health { # ERROR: Unsupported block type
    tcp = "127.0.0.1:1"
  }
}
