package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/orch-dev/orch/cmd/orch/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func rootCommand() *cobra.Command {
	return (&cli.App{Version: "dev", Stdin: os.Stdin, Stdout: io.Discard, Stderr: io.Discard}).Command()
}

// commands lists every command users can run (not the hidden ones), the
// root included, keyed by its path without "orch" ("" for the root).
func commands(root *cobra.Command) map[string]*cobra.Command {
	out := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		out[strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "orch"), " ")] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

// docSections splits docs/cli.md at its level-2 and level-3 headings:
// "## orch plan" is section "plan", "## Global flags" is "#Global flags".
func docSections(t *testing.T) map[string]string {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`^#{2,3} (.+)$`)
	out := map[string]string{}
	key := ""
	fence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if m := heading.FindStringSubmatch(line); m != nil && !fence {
			key = "#" + m[1]
			if name, ok := strings.CutPrefix(m[1], "orch "); ok {
				key = name
			}
			if _, dup := out[key]; dup {
				t.Errorf("docs/cli.md: two sections %q", m[1])
			}
			out[key] = ""
			continue
		}
		out[key] += line + "\n"
	}
	return out
}

// flagsOf lists the flags a command documents: its own, and for the root
// the global ones (persistent and -chdir, -version). help is everywhere.
func flagsOf(c *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	add := func(f *pflag.Flag) {
		if f.Name != "help" && !f.Hidden {
			out = append(out, f)
		}
	}
	if c.HasParent() {
		c.LocalNonPersistentFlags().VisitAll(add)
	} else {
		c.LocalFlags().VisitAll(add)
	}
	return out
}

var flagCell = regexp.MustCompile("`-{1,2}([a-z][a-z0-9-]*)")

// TestCLIDocMatchesCommands: docs/cli.md documents every command and flag
// of orch, and lists no command or flag orch does not have. A command is
// a section "## orch NAME" (or "### orch NAME SUB"), its flags the rows
// "| `-flag ...` |" of that section's tables; the root's flags are in
// "## Global flags".
func TestCLIDocMatchesCommands(t *testing.T) {
	root := rootCommand()
	cmds := commands(root)
	secs := docSections(t)
	for path, c := range cmds {
		key := path
		if path == "" {
			key = "#Global flags"
		}
		sec, ok := secs[key]
		if !ok {
			t.Errorf("docs/cli.md has no section %q for orch %s", "## orch "+path, path)
			continue
		}
		for _, f := range flagsOf(c) {
			if !strings.Contains(sec, "`-"+f.Name) {
				t.Errorf("docs/cli.md, %s: flag -%s of orch %s is not documented", key, f.Name, path)
			}
		}
	}
	for key, sec := range secs {
		c, isCmd := cmds[key]
		switch {
		case key == "#Global flags":
			c, isCmd = root, true
		case strings.HasPrefix(key, "#") || key == "":
			continue
		case !isCmd:
			t.Errorf("docs/cli.md documents orch %s, which orch does not have", key)
			continue
		}
		for _, line := range strings.Split(sec, "\n") {
			if !strings.HasPrefix(line, "| `-") {
				continue
			}
			cell := strings.SplitN(line, "|", 3)[1]
			for _, m := range flagCell.FindAllStringSubmatch(cell, -1) {
				name := m[1]
				if len(name) == 1 {
					if c.Flags().ShorthandLookup(name) == nil {
						t.Errorf("docs/cli.md, %s: orch %s has no flag -%s", key, key, name)
					}
					continue
				}
				if c.Flags().Lookup(name) == nil && c.InheritedFlags().Lookup(name) == nil && c.PersistentFlags().Lookup(name) == nil {
					t.Errorf("docs/cli.md, %s: orch %s has no flag -%s", key, strings.TrimPrefix(key, "#"), name)
				}
			}
		}
	}
	// The list of commands at the top names exactly the commands.
	listed := regexp.MustCompile("\\[`([a-z]+)`\\]\\(#orch-").FindAllStringSubmatch(secs["#"]+docHead(t), -1)
	seen := map[string]bool{}
	for _, m := range listed {
		seen[m[1]] = true
		if _, ok := cmds[m[1]]; !ok {
			t.Errorf("docs/cli.md lists orch %s, which orch does not have", m[1])
		}
	}
	for _, c := range root.Commands() {
		if !c.Hidden && !seen[c.Name()] {
			t.Errorf("the list of commands at the top of docs/cli.md lacks %s", c.Name())
		}
	}
}

// docHead is docs/cli.md up to its first level-2 heading.
func docHead(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(b), "\n## ")
	return head
}

// TestManPages: make docs's generator writes one man page per command,
// with its flags.
func TestManPages(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(goTool(), "run", "./cli/gendocs", "-out", out, "-version", "v9.9.9")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gendocs: %v\n%s", err, b)
	}
	for path, c := range commands(rootCommand()) {
		if path == "help" {
			continue // cobra/doc writes no page for help
		}
		name := "orch"
		if path != "" {
			name += "-" + strings.ReplaceAll(path, " ", "-")
		}
		b, err := os.ReadFile(filepath.Join(out, name+".1"))
		if err != nil {
			t.Errorf("no man page for orch %s: %v", path, err)
			continue
		}
		page := string(b)
		if !strings.Contains(page, "orch v9.9.9") {
			t.Errorf("%s.1 does not name the version", name)
		}
		for _, f := range flagsOf(c) {
			if !strings.Contains(page, "--"+f.Name) {
				t.Errorf("%s.1 lacks -%s", name, f.Name)
			}
		}
	}
}

// TestVariablePrecedenceDocumented: the Variables section of docs/cli.md
// lists the sources of a variable's value in the order orch applies them
// (the later wins): default, ORCH_VAR_<name>, -var-file, -var. It said
// that the environment won over -var.
func TestVariablePrecedenceDocumented(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.hcl": `variable "x" {
  type    = number
  default = 0
  validation {
    condition     = var.x == 2
    error_message = "x is not 2."
  }
}
`,
		"two.vars": "x = 2\n", "one.vars": "x = 1\n"})
	orch(t, dir, []string{"ORCH_VAR_x=1"}, "validate", "-var", "x=2").want(t, 0)
	orch(t, dir, []string{"ORCH_VAR_x=2"}, "validate", "-var", "x=1").want(t, 1)
	orch(t, dir, []string{"ORCH_VAR_x=1"}, "validate", "-var-file", "two.vars").want(t, 0)
	orch(t, dir, nil, "validate", "-var-file", "two.vars", "-var", "x=1").want(t, 1)
	orch(t, dir, nil, "validate", "-var-file", "one.vars", "-var-file", "two.vars").want(t, 0)

	sec := docSections(t)["#Variables"]
	last := -1
	for _, src := range []string{"the variable's `default`", "`ORCH_VAR_<name>`", "`-var-file FILE`", "`-var NAME=VALUE`"} {
		i := strings.Index(sec, src)
		if i < 0 || i < last {
			t.Fatalf("docs/cli.md, Variables: %s is missing or out of order (lowest precedence first):\n%s", src, sec)
		}
		last = i
	}
}
