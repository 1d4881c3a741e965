daemon "a" { # ERROR: Dependency cycle between daemon.a, daemon.b and daemon.c
  command    = ["/bin/a"]
  depends_on = [daemon.c]
}

daemon "b" {
  command    = ["/bin/b"]
  depends_on = [daemon.a]
}

daemon "c" {
  command = ["/bin/c"]
  env     = { B = daemon.b.name }
}
