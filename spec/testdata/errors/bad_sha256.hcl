# FILES: mirror
module "mirror" {
  source = "./mirror"
  sha256 = "abc123" # ERROR: Invalid sha256
}
