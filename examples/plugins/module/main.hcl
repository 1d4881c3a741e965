# The example module plugin: orch-module-eventlog
# (examples/plugins/module/orch-module-eventlog) writes orch's lifecycle
# events to ./events.jsonl and counts them in its key-value namespace.
# Build it with `make plugins`, then: orch up examples/plugins/module. The
# plugin runs as its own process, launched by orch up over go-plugin; the
# daemon below gives it something to record.

daemon "ticker" {
  command = ["/bin/sh", "-c", "sleep 5"]

  restart {
    policy = "always"
  }
}

module "eventlog" {
  source = "../bin/orch-module-eventlog"
  # sha256 = "..." pins the executable: orch refuses any other.
  config = {
    path   = "${path.root}/events.jsonl"
    topics = ["orch.daemon.*", "orch.module.*"]
  }
  limits {
    call_timeout = "2s"
  }
}
