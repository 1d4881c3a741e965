module "notes" {
  source = "./module_source_not_module.hcl" # ERROR: Not a module
}
