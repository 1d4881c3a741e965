module "compress" {
  source = "./modules/compress.wasm" # ERROR: Module source not found
}
