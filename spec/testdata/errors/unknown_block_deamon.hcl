deamon "api" { # ERROR: Unsupported block type
  command = ["/bin/api"]
}
