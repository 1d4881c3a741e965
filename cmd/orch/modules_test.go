package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// exampleModules are the WebAssembly modules of examples/modules, built
// (as `make modules` does) before any test runs: TestExamples validates
// examples/modules, and a module's source must exist to be valid.
var exampleModules = []string{"eventcount", "transform"}

func init() {
	for _, name := range exampleModules {
		if err := buildExampleModule(name); err != nil {
			// TestExamples reports the missing source; say why here.
			fmt.Fprintf(os.Stderr, "building examples/modules/%s: %v\n", name, err)
		}
	}
}

// buildExampleModule builds examples/modules/<name>/<name>.wasm with the
// stock toolchain, as a WASI reactor, through a temporary file so that a
// concurrent run never sees half of it.
func buildExampleModule(name string) error {
	dir := filepath.Join("..", "..", "examples", "modules", name)
	tmp, err := os.CreateTemp(dir, name+"-*.wasm.tmp")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(goTool(), "build", "-buildmode=c-shared", "-o", filepath.Base(tmp.Name()), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name+".wasm"))
}
