# Errors of different phases in independent blocks are all reported in
# one load (a misspelt argument does not hide a type error elsewhere, nor
# a cycle an undeclared reference), as Terraform validates every block;
# a block that refers to one with an error is skipped without a word
# (daemon "g"), and so is the rest of a block whose references failed
# (daemon "c"'s policy).
daemon "a" {
  comand = ["/bin/sleep", "1"] # ERROR: Unsupported argument
}
daemon "b" {
  command = ["/bin/sleep", "1"]
  env     = { X = [1] } # ERROR: Incorrect attribute value type
}
daemon "c" {
  command    = ["/bin/sleep", "1"]
  depends_on = [daemon.d] # ERROR: Reference to undeclared daemon
  restart {
    policy = "alway"
  }
}
daemon "e" { # ERROR: Dependency cycle between daemon.e and daemon.f
  command    = ["/bin/sleep", "1"]
  depends_on = [daemon.f]
}
daemon "f" {
  command    = ["/bin/sleep", "1"]
  depends_on = [daemon.e]
}
daemon "g" {
  command    = ["/bin/sleep", "1"]
  depends_on = [daemon.a]
  env        = { Y = daemon.b.env.X }
}
daemon "h" {
  command = ["/bin/sleep", "1"]
  restart {
    policy = "alway" # ERROR: Invalid restart policy
  }
}
