daemon "api" {
  comand = ["/bin/api"] # ERROR: Unsupported argument
}
