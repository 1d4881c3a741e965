runtime "docker" "my host" {} # ERROR: Invalid runtime name
