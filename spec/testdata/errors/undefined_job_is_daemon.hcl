daemon "db" {
  command = ["/bin/db"]
}

daemon "api" {
  command    = ["/bin/api"]
  depends_on = [job.db] # ERROR: Reference to undeclared job
}
