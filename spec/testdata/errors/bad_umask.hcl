daemon "api" {
  command = ["/bin/api"]
  umask   = "0988" # ERROR: Invalid umask
}
