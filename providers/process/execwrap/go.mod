module 0orch/execwrap

go 1.22
