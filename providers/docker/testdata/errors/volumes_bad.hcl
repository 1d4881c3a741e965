runtime "docker" "local" {}

daemon "db" {
  runtime = runtime.docker.local
  image   = "example/db:1"
  volumes = [
    "/srv/db:/var/lib/db",
    "data:/cache:ro",
    "./relative:/x", # ERROR: Invalid volume
    "/srv/a:relative/target", # ERROR: Invalid volume
    "/srv/b:/b:rx", # ERROR: Invalid volume
    "justonepart", # ERROR: Invalid volume
  ]
}
