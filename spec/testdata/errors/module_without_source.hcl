module "compress" { # ERROR: Missing required argument
  config = { level = 9 }
}
