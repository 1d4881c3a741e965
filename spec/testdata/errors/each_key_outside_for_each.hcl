daemon "api" {
  command = ["/bin/api", each.key] # ERROR: Reference to each in a block without for_each
}
