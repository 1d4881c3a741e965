daemon "api" {
  command = ["/bin/api"]
  resources {
    memory_max = "512K" # ERROR: Invalid size
    cpu_max    = 0      # ERROR: Invalid CPU limit
    pids_max   = 0      # ERROR: Invalid number
  }
}
