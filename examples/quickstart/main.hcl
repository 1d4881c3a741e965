# The quickstart: a small stack that needs nothing but a POSIX shell.
#
#   job "prepare"     writes a file the others read, then exits 0
#   daemon "producer" appends a line to data/feed every second
#   daemon "consumer" follows the feed, once the producer is healthy
#
# Run it with `make run` (orch up examples/quickstart); edit this file while
# it runs and only what you changed is restarted.

variable "interval" {
  type        = number
  default     = 1
  description = "Seconds between two lines of the feed."

  validation {
    condition     = var.interval > 0
    error_message = "interval must be more than zero."
  }
}

locals {
  data = "${path.root}/data"
}

job "prepare" {
  command = ["/bin/sh", "-c", "mkdir -p '${local.data}' && date > '${local.data}/started'"]
}

daemon "producer" {
  command    = ["/bin/sh", "-c", "while true; do date >> '${local.data}/feed'; echo tick; sleep ${var.interval}; done"]
  depends_on = [job.prepare]

  health {
    exec     = ["/bin/sh", "-c", "test -s '${local.data}/feed'"]
    interval = "500ms"
  }

  restart {
    policy  = "always"
    backoff = "100ms"
  }

  stop {
    signal  = "SIGTERM"
    timeout = "2s"
  }
}

daemon "consumer" {
  command    = ["/bin/sh", "-c", "exec tail -n 0 -F '${local.data}/feed'"]
  depends_on = [daemon.producer]
  env = {
    STARTED_BY = "orch"
  }
}
