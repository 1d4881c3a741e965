# The example provider plugin: runtime kind "files", served by
# orch-provider-files (examples/plugins/provider/orch-provider-files).
# Build it with `make plugins`, then: orch up examples/plugins/provider
# (or orch apply). Each daemon below is a file in ./out.

runtime "files" "local" {
  plugin = "../bin/orch-provider-files"
  # sha256 = "..." pins the executable: orch refuses any other.
  root = "${path.root}/out"
}

daemon "greeting" {
  runtime = runtime.files.local
  content = "hello from orch\n"
}

daemon "motd" {
  runtime  = runtime.files.local
  filename = "motd.txt"
  content  = "the files runtime keeps this file as declared\n"
  mode     = "0600"
}
