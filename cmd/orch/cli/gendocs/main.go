// Command gendocs writes orch's man pages, one per command (orch.1,
// orch-plan.1, ...), from the commands themselves (cobra/doc): make docs
// runs it into bin/man. It is a program of its own so that the orch binary
// does not carry the man page renderer.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/orch-dev/orch/cmd/orch/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

func main() {
	out := flag.String("out", "bin/man", "write the man pages into `DIR`")
	version := flag.String("version", "dev", "the orch version the pages name")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	app := &cli.App{Version: *version, Stdin: os.Stdin, Stdout: io.Discard, Stderr: os.Stderr}
	root := app.Command()
	root.DisableAutoGenTag = true
	escape(root)
	hdr := &doc.GenManHeader{Title: "ORCH", Section: "1", Source: "orch " + *version, Manual: "orch manual"}
	if err := doc.GenManTree(root, hdr, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

// escape keeps the Markdown the man pages are rendered from from taking
// "<state dir>" for an HTML tag.
func escape(c *cobra.Command) {
	c.Long = strings.ReplaceAll(c.Long, "<", `\<`)
	for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { f.Usage = strings.ReplaceAll(f.Usage, "<", `\<`) })
	}
	for _, sub := range c.Commands() {
		escape(sub)
	}
}
