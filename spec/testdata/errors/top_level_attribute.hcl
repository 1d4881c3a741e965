port = 8080 # ERROR: Unsupported argument
