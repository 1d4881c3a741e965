orch {
  backend "etcd" {
    endpoints = ["127.0.0.1:2379"]
    prefix    = "orch/app" # ERROR: Invalid prefix
  }
}

daemon "api" {
  command = ["/bin/api"]
}
