daemon "api" {
  command    = ["/bin/api"]
  depends_on = [daemon.api] # ERROR: Self-referential depends_on
}
