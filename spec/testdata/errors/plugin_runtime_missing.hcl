runtime "nomad" "cluster" {
  plugin = "./bin/orch-provider-nomad" # ERROR: Plugin not found
}
