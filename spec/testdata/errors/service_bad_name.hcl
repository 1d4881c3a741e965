daemon "api" {
  command = ["/bin/api"]
  service {
    name = "My_API" # ERROR: Invalid service name
    port = 8080
    mdns = "http"   # ERROR: Invalid mDNS service type
  }
}
