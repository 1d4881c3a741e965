locals {
  a = "${local.b}/x" # ERROR: Dependency cycle between local.a and local.b
  b = "${local.a}/y"
}

daemon "api" {
  command = [local.a]
}
