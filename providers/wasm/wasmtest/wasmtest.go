// Package wasmtest builds the WebAssembly guests tests need, with the
// stock toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared: WASI
// reactors), once per test binary: the example modules and the sandbox's
// hostile guest.
package wasmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Packages are the guests Guest knows, by name, as paths from the
// repository's root.
var Packages = map[string]string{
	"eventcount": "./examples/modules/eventcount",
	"transform":  "./examples/modules/transform",
	"hostile":    "./providers/wasm/testdata/guests/hostile",
}

var built struct {
	once sync.Once
	dir  string
	err  error
}

// Guest returns the .wasm file of the named guest of Packages. All of them
// are built, in parallel, the first time; call Remove from TestMain.
func Guest(tb testing.TB, name string) string {
	tb.Helper()
	if Packages[name] == "" {
		tb.Fatalf("wasmtest: no guest %q", name)
	}
	built.once.Do(build)
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return filepath.Join(built.dir, name+".wasm")
}

// Dir is the directory of the built guests (empty before the first
// Guest): tests may keep a compilation cache beside them.
func Dir() string { return built.dir }

// Remove deletes the built guests.
func Remove() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

func build() {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..", "..")
	if built.dir, built.err = os.MkdirTemp("", "orch-wasm-guests-"); built.err != nil {
		return
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, pkg := range Packages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(goTool, "build", "-buildmode=c-shared", "-o", filepath.Join(built.dir, name+".wasm"), pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				built.err = errors.Join(built.err, fmt.Errorf("building %s: %v\n%s", pkg, err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
