variable "port" {
  type    = number
  default = 80
  validation {
    condition     = var.port >= 1024 # ERROR: Invalid value for variable
    error_message = "port must be 1024 or more."
  }
}
