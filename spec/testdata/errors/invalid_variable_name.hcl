variable "my port" { # ERROR: Invalid variable name
  default = 1
}
