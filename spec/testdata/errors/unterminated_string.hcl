# A quote left open in an edit is one error, not one for each line the
# lexer then reads as the rest of a string.
daemon "web" {
  command = ["sleep", "60"]
  env = {
    GREETING = "v6 # ERROR: Invalid multi-line string
  }
  health {
    http     = "http://127.0.0.1:8191/"
    interval = "200ms"
  }
}
