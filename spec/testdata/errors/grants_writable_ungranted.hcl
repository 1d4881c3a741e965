# FILES: compress.wasm data/
module "compress" {
  source = "./compress.wasm"
  grants {
    dirs     = { "/data" = "./data" }
    writable = ["/cache"] # ERROR: Invalid grant
  }
}
