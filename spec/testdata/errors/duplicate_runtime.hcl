runtime "docker" "local" {}
runtime "docker" "local" {} # ERROR: Duplicate runtime "docker" "local"
