# Two WebAssembly modules hosted by orch in a wazero sandbox (docs/modules.md).
#
#   daemon "ticker"     something to watch: it exits every 30 seconds and is
#                       restarted
#   module "eventcount" counts the lifecycle events of daemons in its
#                       key-value namespace (eventcount/main.go)
#   module "transform"  upper-cases the files of input/ into output/
#                       (transform/main.go); it sees nothing else
#
# Build the modules first (the tests of cmd/orch do it too):
#
#   make modules
#
# then `orch up examples/modules`. `orch status` shows the modules beside
# the daemon, `orch logs module.eventcount` what the counter logged; the
# counts are in the state store and survive restarts. Rebuild a module while
# orch up runs and it is replaced (its content hash changed).

daemon "ticker" {
  command = ["/bin/sh", "-c", "sleep 30"]

  restart {
    policy = "always"
  }
}

module "eventcount" {
  source = "eventcount/eventcount.wasm"
  config = { events = ["started", "exited", "healthy", "failed"] }

  limits {
    memory       = "32MiB"
    call_timeout = "2s"
  }
}

module "transform" {
  source = "transform/transform.wasm"
  config = { input = "/in", output = "/out", op = "upper" }

  grants {
    dirs     = { "/in" = "./input", "/out" = "./output" }
    writable = ["/out"]
  }
}
