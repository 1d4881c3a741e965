locals {
  port = 1 + "eighty" # ERROR: Invalid operand
}
