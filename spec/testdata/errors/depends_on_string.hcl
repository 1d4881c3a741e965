daemon "db" {
  command = ["/bin/db"]
}

daemon "api" {
  command    = ["/bin/api"]
  depends_on = "daemon.db" # ERROR: Invalid depends_on
}
