locals {
  bin = "/bin"
}

locals {
  bin = "/usr/bin" # ERROR: Duplicate local value "bin"
}
