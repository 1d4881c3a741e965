package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/orch-dev/orch/spec"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
)

type fmtFlags struct {
	list, write, check, diff bool
}

func (a *App) fmtCommand() *cobra.Command {
	var ff fmtFlags
	cmd := &cobra.Command{
		Use:   "fmt [DIR|FILE...]",
		Short: "Rewrite configuration files in the canonical format",
		Long: `Rewrite *.hcl files in the canonical layout and style (indentation, aligned
equals signs, spacing), as terraform fmt does. Each argument is a directory,
whose *.hcl files are formatted (not its subdirectories, nor *.hcl.json
files), or one *.hcl file; the default is the current directory, and "-"
formats standard input onto standard output. The names of the files that
change are printed on standard output (-list=false to silence), and files
are replaced atomically, keeping their mode (-write=false to leave them).
-check writes nothing and exits 1 when any file is not formatted; -diff
prints what changes as a unified diff. A file that does not parse is
reported with its diagnostics and makes orch fmt exit 1.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			if ff.check {
				ff.write = false
			}
			return a.runFmt(args, ff)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&ff.list, "list", true, "print the names of files whose formatting changes")
	fs.BoolVar(&ff.write, "write", true, "write the result to the file instead of only reporting it")
	fs.BoolVar(&ff.check, "check", false, "write nothing; exit 1 when any file is not formatted (implies -write=false)")
	fs.BoolVar(&ff.diff, "diff", false, "print a unified diff of the changes")
	return cmd
}

func (a *App) runFmt(args []string, ff fmtFlags) error {
	failed, changed := false, false
	for _, arg := range args {
		if arg == "-" {
			c, err := a.fmtStdin(ff)
			changed = changed || c
			if err != nil {
				if ee, ok := err.(*exitError); ok && ee.msg != "" {
					fmt.Fprintf(a.Stderr, "Error: %s\n", ee.msg)
				}
				failed = true
			}
			continue
		}
		files, err := fmtTargets(arg)
		if err != nil {
			fmt.Fprintf(a.Stderr, "Error: %s\n", err)
			failed = true
			continue
		}
		for _, name := range files {
			c, ok := a.fmtFile(name, ff)
			changed = changed || c
			failed = failed || !ok
		}
	}
	if failed || (ff.check && changed) {
		return silentFailure()
	}
	return nil
}

// fmtTargets lists the files an argument of orch fmt stands for.
func fmtTargets(arg string) ([]string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if !isNativeConfig(arg) {
			return nil, fmt.Errorf("%s: orch fmt formats only *.hcl files (HCL JSON files are left as they are)", arg)
		}
		return []string{arg}, nil
	}
	names, err := spec.ConfigFiles(os.DirFS(arg))
	if err != nil {
		return nil, fmt.Errorf("cannot read directory %s: %w", arg, err)
	}
	var out []string
	for _, n := range names {
		if isNativeConfig(n) {
			out = append(out, filepath.Join(arg, n))
		}
	}
	return out, nil
}

func isNativeConfig(name string) bool {
	return spec.IsConfigFile(filepath.ToSlash(name)) && strings.HasSuffix(name, ".hcl")
}

// formatHCL returns src in canonical form, or the syntax errors that stop
// it from being formatted.
func formatHCL(src []byte, name string) ([]byte, hcl.Diagnostics) {
	// The HCL parser recurses once per nesting level: input past orch's
	// limits is refused before it runs (a stack overflow otherwise).
	if d := spec.CheckSource(src, name); d != nil {
		return nil, hcl.Diagnostics{d}
	}
	_, diags := hclwrite.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// fmtFile formats one file; it reports whether the file's formatting
// changes and whether all went well (problems are printed).
func (a *App) fmtFile(name string, ff fmtFlags) (changed, ok bool) {
	src, err := os.ReadFile(name)
	if err != nil {
		fmt.Fprintf(a.Stderr, "Error: %s\n", err)
		return false, false
	}
	out, diags := formatHCL(src, name)
	if diags.HasErrors() {
		a.writeDiags(diags, map[string]*hcl.File{name: sourceFile(src, name)})
		return false, false
	}
	if bytes.Equal(src, out) {
		return false, true
	}
	if ff.list {
		fmt.Fprintln(a.Stdout, name)
	}
	if ff.diff {
		if err := writeDiff(a.Stdout, name, src, out); err != nil {
			fmt.Fprintf(a.Stderr, "Error: %s\n", err)
			return true, false
		}
	}
	if ff.write {
		if err := writeFileAtomic(name, out); err != nil {
			fmt.Fprintf(a.Stderr, "Error: %s\n", err)
			return true, false
		}
	}
	return true, true
}

// fmtStdin formats standard input: the result goes to standard output
// unless -check or -diff is given.
func (a *App) fmtStdin(ff fmtFlags) (changed bool, err error) {
	src, err := io.ReadAll(a.Stdin)
	if err != nil {
		return false, &exitError{code: ExitError, msg: "cannot read standard input: " + err.Error()}
	}
	out, diags := formatHCL(src, "<stdin>")
	if diags.HasErrors() {
		a.writeDiags(diags, map[string]*hcl.File{"<stdin>": sourceFile(src, "<stdin>")})
		return false, silentFailure()
	}
	changed = !bytes.Equal(src, out)
	switch {
	case ff.diff:
		if changed {
			err = writeDiff(a.Stdout, "<stdin>", src, out)
		}
	case !ff.check:
		_, err = a.Stdout.Write(out)
	}
	if err != nil {
		return changed, &exitError{code: ExitError, msg: err.Error()}
	}
	return changed, nil
}

// sourceFile returns src as an hcl.File for rendering diagnostics: with
// the syntax tree, however partial, the enclosing block is named.
func sourceFile(src []byte, name string) *hcl.File {
	if spec.CheckSource(src, name) != nil {
		return &hcl.File{Bytes: src} // past the limits: not parsed
	}
	f, _ := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if f == nil {
		f = &hcl.File{}
	}
	f.Bytes = src
	return f
}

func writeDiff(w io.Writer, name string, before, after []byte) error {
	return difflib.WriteUnifiedDiff(w, difflib.UnifiedDiff{
		A:        difflib.SplitLines(string(before)),
		B:        difflib.SplitLines(string(after)),
		FromFile: "old/" + filepath.ToSlash(name),
		ToFile:   "new/" + filepath.ToSlash(name),
		Context:  3,
	})
}

// writeFileAtomic replaces the file at name (following symlinks) with data
// through a temporary file in the same directory and a rename, so a reader
// never sees half a file; the file keeps its mode.
func writeFileAtomic(name string, data []byte) (err error) {
	target, err := filepath.EvalSymlinks(name)
	if err != nil {
		return err
	}
	st, err := os.Stat(target)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".orchfmt-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Chmod(st.Mode().Perm()); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), target)
}
