daemon "api" { # ERROR: Unclosed configuration block
  command = ["/bin/api"]
