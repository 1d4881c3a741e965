# VARS: port=abc
variable "port" { # ERROR: Invalid value for variable
  type    = number
  default = 8080
}

daemon "api" {
  command = ["/bin/api", var.port]
}
