# VARS: pin=hunter2
variable "pin" { # ERROR: Invalid value for variable
  type      = number
  sensitive = true
}
