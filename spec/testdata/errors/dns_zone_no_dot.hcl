orch {
  dns {
    listen = "127.0.0.1:5353"
    zone   = "orch.internal" # ERROR: Invalid DNS zone
  }
  proxy {
    listen = "127.0.0.1" # ERROR: Invalid listen address
  }
}

daemon "api" {
  command = ["/bin/api"]
}
