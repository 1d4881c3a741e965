# Services: two instances of a web server (Python's http.server, from
# Debian's python3), each published while it is ready:
#
#   DNS     web.orch.internal (both), 0.web.orch.internal, 1.web.orch.internal
#           dig @127.0.0.1 -p 5354 web.orch.internal SRV
#   proxy   http://web.localhost:8088/ (round robin over the ready ones)
#           curl -H 'Host: web.localhost' http://127.0.0.1:8088/
#   mDNS    _http._tcp on the local network (avahi-browse -rt _http._tcp)
#
# Run it with `orch up examples/services`. Edit the page or the env below
# and save: the instances are replaced one at a time, each new one routed
# once it answers, each old one drained before it is stopped, so a client
# of the proxy sees no failed request.

variable "dns_port" {
  type    = number
  default = 5354
}

variable "proxy_port" {
  type    = number
  default = 8088
}

variable "web_port" {
  type        = number
  default     = 8091
  description = "The first instance's port; the second listens on the next one."
}

orch {
  dns {
    listen = "127.0.0.1:${var.dns_port}"
  }
  proxy {
    listen = "127.0.0.1:${var.proxy_port}"
  }
}

daemon "web" {
  count   = 2
  # serve.py is Python's http.server listening with SO_REUSEPORT: the new
  # instance of a replace binds beside the old one, and is ready once it
  # listens itself (orch checks), not when the old one answers its check.
  command = ["python3", "${path.root}/serve.py", "${var.web_port + count.index}", "${path.root}/site"]
  env = {
    PYTHONUNBUFFERED = "1"
  }

  health {
    http     = "http://127.0.0.1:${var.web_port + count.index}/"
    interval = "200ms"
  }

  lifecycle {
    create_before_destroy = true
    max_parallel          = 1
  }

  service {
    name  = "web"
    port  = var.web_port + count.index
    route = "web.localhost/"
    mdns  = "_http._tcp"
    drain = "5s"
  }
}
