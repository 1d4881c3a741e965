locals {
  bin = "/bin"
}

daemon "api" {
  command = ["${local.bni}/api"] # ERROR: Reference to undeclared local value
}
