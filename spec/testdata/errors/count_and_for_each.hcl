daemon "api" {
  count    = 2
  for_each = { a = 1 } # ERROR: Invalid combination of count and for_each
  command  = ["/bin/api"]
}
