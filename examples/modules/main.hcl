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
# Today `orch validate` and `orch plan` accept it and the module host runs
# these modules in its tests (providers/wasm); `orch up` does not host
# modules yet, so their steps fail with a message saying so.

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
