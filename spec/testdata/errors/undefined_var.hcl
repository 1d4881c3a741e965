daemon "api" {
  command = ["/bin/api", var.prot] # ERROR: Reference to undeclared input variable
}
