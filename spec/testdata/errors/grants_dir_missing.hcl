# FILES: compress.wasm data/
module "compress" {
  source = "./compress.wasm"
  grants {
    dirs = {
      "/data"  = "./data"
      "/cache" = "./cache" # ERROR: Granted directory not found
    }
  }
}
