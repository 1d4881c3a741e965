daemon "1api" { # ERROR: Invalid daemon name
  command = ["/bin/api"]
}
