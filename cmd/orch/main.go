// Command orch is the declarative orchestrator's command-line program; the
// commands themselves live in package cli.
package main

import (
	"os"

	"github.com/orch-dev/orch/cmd/orch/cli"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit((&cli.App{Version: version, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}).Run(os.Args[1:]))
}
