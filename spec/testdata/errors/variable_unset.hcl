variable "token" { # ERROR: No value for required variable
  type = string
}

daemon "api" {
  command = ["/bin/api", var.token]
}
