daemon "api" { # ERROR: Missing command
  env = { A = "1" }
}
