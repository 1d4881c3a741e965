variable "port" {
  default = 1
}

variable "port" { # ERROR: Duplicate variable "port"
  default = 2
}
