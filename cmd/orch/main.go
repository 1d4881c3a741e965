// Command orch is the declarative orchestrator's command-line program; the
// commands themselves live in package cli.
package main

import (
	"os"

	"github.com/orch-dev/orch/cmd/orch/cli"
	"github.com/orch-dev/orch/providers/process"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// orch re-executes itself for the process provider's helpers (the exec
	// wrapper and the log daemon); they never reach the CLI.
	if code, ok := process.HelperMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit((&cli.App{Version: version, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}).Run(os.Args[1:]))
}
