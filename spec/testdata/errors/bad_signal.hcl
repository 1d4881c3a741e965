daemon "api" {
  command = ["/bin/api"]
  stop {
    signal = "SIGTREM" # ERROR: Invalid signal
  }
}
