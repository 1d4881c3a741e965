package spec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/zclconf/go-cty/cty"
)

// AttrSchema describes one attribute a runtime backend adds to the language:
// on its runtime block, or on the daemons and jobs that run on it.
type AttrSchema struct {
	Name     string
	Type     cty.Type  // the value is converted to this type; cty.DynamicPseudoType accepts any
	Required bool      // an error when absent
	Default  cty.Value // used when absent and not required; cty.NilVal means null
	// RequiredUnless names another attribute or block of the same schema
	// whose presence waives Required (docker's image, with a build block).
	RequiredUnless string
	// ForcesReplacement marks attributes whose change needs a new instance
	// (image, ports); the others are updated in place.
	ForcesReplacement bool
	Sensitive         bool   // never printed, whatever its source
	Doc               string // one line for docs and diagnostics
	// Check, when set, validates a known, non-null value when the
	// configuration is loaded (a port mapping's syntax, say). Its error is
	// reported at the attribute; a *CheckError can point at one element of
	// a list and choose the summary, and an errors.Join of them reports
	// each. It must not do I/O. In-process only:
	// it does not cross a plugin's wire.
	Check func(cty.Value) error
}

// BlockSchema describes a nested block a runtime backend adds to daemons
// and jobs (docker's build). An instance has at most one of each. Its value
// is an object of its attributes (defaults filled in), kept in
// Resource.Attrs under the block's name and readable in expressions as
// daemon.<name>.<block>.<attr>. A block's value always forces replacement
// when it changes.
type BlockSchema struct {
	Name  string
	Attrs []AttrSchema
	Doc   string
	// Resolve, when set, is called once the block's attributes evaluated
	// without error. It may read files (through fc, relative to the
	// configuration directory) and returns the value to keep, which may
	// carry computed attributes (docker adds the hash of its build
	// context, so that an edit of a file there changes the plan). An error
	// is reported at the block; a *CheckError with Attr set, at that
	// attribute. Results are reused within one load for equal values.
	Resolve func(v cty.Value, fc FileContext) (cty.Value, error)
}

// CheckError is what AttrSchema.Check and BlockSchema.Resolve return to
// place a complaint precisely.
type CheckError struct {
	// Summary is the diagnostic's summary; "" means "Invalid <attribute>".
	Summary string
	// Attr names the attribute of a block at fault ("" for the block).
	Attr string
	// Index is the element of a list value at fault, when InList.
	Index  int
	InList bool
	// Key is the entry of a map value at fault, when InMap.
	Key   string
	InMap bool
	Err   error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// FileContext lets a BlockSchema.Resolve read files named in the
// configuration: relative paths start at Dir, the configuration directory.
type FileContext struct {
	Dir  string // absolute
	fsys fs.FS  // the configuration directory, as Load reads it
}

// NewFileContext is a FileContext over fsys, which holds directory dir
// (absolute) at its root; for tests of a Resolve function.
func NewFileContext(fsys fs.FS, dir string) FileContext { return FileContext{Dir: dir, fsys: fsys} }

// Abs returns p as an absolute, clean path: relative paths start at Dir.
func (fc FileContext) Abs(p string) string { return absPath(fc.Dir, p) }

// DirFS returns the directory p (relative to Dir, or absolute) as a file
// system and its absolute path. A p that is not an existing directory is
// an error. Below Dir it reads through the loader's file system (tests load
// from memory); elsewhere from the host.
func (fc FileContext) DirFS(p string) (fs.FS, string, error) {
	abs := fc.Abs(p)
	if fp := fsPath(fc.Dir, p); fp != "" && fc.fsys != nil {
		st, err := fs.Stat(fc.fsys, fp)
		if err != nil {
			return nil, abs, err
		}
		if !st.IsDir() {
			return nil, abs, fmt.Errorf("%s is not a directory", abs)
		}
		sub, err := fs.Sub(fc.fsys, fp)
		return sub, abs, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, abs, err
	}
	if !st.IsDir() {
		return nil, abs, fmt.Errorf("%s is not a directory", abs)
	}
	return os.DirFS(filepath.Clean(abs)), abs, nil
}

// RuntimeSchema is what a backend declares about itself. spec never imports
// providers: cmd/orch collects these from the providers and passes them in
// Options.Schemas, keyed by runtime kind.
type RuntimeSchema struct {
	Kind string
	// Runtime lists the attributes of `runtime "<kind>" "<name>" {}`.
	Runtime []AttrSchema
	// Daemon lists the attributes this backend adds to daemons and jobs
	// that name a runtime of this kind.
	Daemon []AttrSchema
	// Blocks lists the nested blocks this backend adds to them.
	Blocks []BlockSchema
	// CommandRequired makes `command` mandatory on daemons and jobs of this
	// kind (true for native processes; a container may use its image's).
	CommandRequired bool
	// OwnsListeners says that the backend tells whether an instance's own
	// processes listen on a port of this host (providers.ListenerOwner):
	// the new instance of a create_before_destroy replace whose check
	// reaches such a port, where the old one answers too, is ready only
	// once it listens there itself (true for native processes).
	OwnsListeners bool
}

func (s RuntimeSchema) daemonAttr(name string) (AttrSchema, bool) {
	for _, a := range s.Daemon {
		if a.Name == name {
			return a, true
		}
	}
	return AttrSchema{}, false
}

func (s RuntimeSchema) block(name string) *BlockSchema {
	for i := range s.Blocks {
		if s.Blocks[i].Name == name {
			return &s.Blocks[i]
		}
	}
	return nil
}
