daemon "api" {
  command = ["/bin/api", "--port", 8000 + count.index] # ERROR: Reference to count in non-counted context
}
