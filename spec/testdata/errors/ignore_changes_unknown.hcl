daemon "api" {
  command = ["/bin/api"]
  lifecycle {
    ignore_changes = [evn] # ERROR: Invalid ignore_changes entry
  }
}
