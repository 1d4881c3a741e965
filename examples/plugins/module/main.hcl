# The example module plugin: orch-module-eventlog
# (examples/plugins/module/orch-module-eventlog) writes orch's lifecycle
# events to ./events.jsonl and counts them. Build it with `make plugins`.
# The module provider that hosts module blocks in orch up is not wired yet;
# providers/plugin's tests run this configuration through the plugin
# Loader.

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
