daemon "api" {
  command = ["/bin/api"]
  env = {
    PORT = "8080"
    HOSTS = ["a", "b"] # ERROR: Incorrect attribute value type
  }
}
