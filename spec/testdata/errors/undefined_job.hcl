daemon "api" {
  command    = ["/bin/api"]
  depends_on = [job.migrate] # ERROR: Reference to undeclared job
}
