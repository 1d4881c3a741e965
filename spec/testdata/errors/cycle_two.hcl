daemon "a" { # ERROR: Dependency cycle between daemon.a and daemon.b
  command    = ["/bin/a"]
  depends_on = [daemon.b]
}

daemon "b" {
  command    = ["/bin/b"]
  depends_on = [daemon.a]
}
