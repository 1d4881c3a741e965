daemon "web" {
  for_each = ["eu", "us"] # ERROR: Invalid for_each
  command  = ["/bin/web", each.key]
}
