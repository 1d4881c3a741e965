daemon "api" {
  command = ["/bin/api"]
}

daemon "api" { # ERROR: Duplicate daemon "api"
  command = ["/bin/api2"]
}
