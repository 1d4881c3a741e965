runtime "dokcer" "local" {} # ERROR: Unknown runtime kind
