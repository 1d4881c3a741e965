package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/json"
)

// Options are the inputs of Load besides the directory itself.
type Options struct {
	// Schemas describes the runtime kinds orch knows, keyed by kind. A
	// runtime block of an unknown kind is an error unless it names a plugin.
	Schemas map[string]RuntimeSchema
	// PluginSchemas describes runtime kinds served by provider plugins, as
	// their plugins declared them, keyed by kind: a runtime block that
	// names a plugin and whose kind is here is validated like a built-in
	// one, and so are the daemons and jobs on it. A plugin kind missing
	// here accepts any attribute (its plugin has not been asked yet).
	PluginSchemas map[string]RuntimeSchema
	// VarFiles are -var-file contents, applied in order.
	VarFiles []VarFile
	// Vars are -var NAME=VALUE assignments, applied in order after VarFiles.
	Vars []string
	// Environ is the environment searched for ORCH_VAR_<name>; nil for none.
	Environ []string
	// CheckPrograms reports the program of a daemon or job on a process
	// runtime that is not found (in its PATH: its env's, else Environ's,
	// else orch's own) or not executable, at its place in the command: an
	// error, or a warning when a job may create it first (programs.go).
	// orch validate and orch plan want it; a load to apply, destroy or
	// show state does not (a missing program fails that one start).
	CheckPrograms bool
	// Cache keeps the evaluated daemon and job blocks in the state
	// directory (CacheFile) and serves those whose text and inputs did
	// not change from there (cache.go). The results and diagnostics are
	// those of a load without it.
	Cache bool
	// CacheStateDir, when set, is the state directory the cache lives in
	// instead of the project's (orch { state_dir }, default .orch).
	CacheStateDir string
	// MakeStateDir: the caller makes the state directory anyway (orch
	// plan, apply, up): a load without errors makes it (mode 0700) when
	// it is missing, so that the cache is written from the first load
	// of a project, not from the second (at 10,000 daemons the first
	// orch plan after the first orch apply parsed everything again).
	MakeStateDir bool
}

// VarFile is the content of a -var-file: HCL attributes NAME = VALUE.
type VarFile struct {
	Name string
	Src  []byte
}

// IsConfigFile reports whether name is read as configuration: *.hcl and
// *.hcl.json, but not hidden files or editor backups.
func IsConfigFile(name string) bool {
	base := path.Base(name)
	if strings.HasPrefix(base, ".") || strings.HasPrefix(base, "#") || strings.HasSuffix(base, "~") {
		return false
	}
	return strings.HasSuffix(base, ".hcl") || strings.HasSuffix(base, ".hcl.json")
}

// Load reads, evaluates and validates the configuration in dir. It always
// returns a Config whose Files holds what was parsed, so that diagnostics
// can be rendered with source snippets; the Config is complete only when
// the diagnostics have no errors.
func Load(dir string, opts Options) (*Config, hcl.Diagnostics) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return &Config{Dir: dir, Files: map[string]*hcl.File{}}, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Cannot read configuration directory", Detail: err.Error(),
		}}
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		detail := "The path " + abs + " is not a directory."
		if err != nil {
			detail = err.Error()
		}
		return &Config{Dir: abs, Files: map[string]*hcl.File{}}, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Cannot read configuration directory", Detail: detail,
		}}
	}
	return LoadFS(os.DirFS(abs), abs, opts)
}

// LoadFS is Load over a file system: fsys holds the configuration at its
// root, and dir is the absolute path it stands for (path.root, and the base
// of relative paths in diagnostics and attributes). file() and module
// sources are read through fsys.
func LoadFS(fsys fs.FS, dir string, opts Options) (*Config, hcl.Diagnostics) {
	if opts.Cache {
		// With the cache, then (when it met anything it cannot vouch for)
		// only writing it; a load with an error is done without it, so
		// that errors are never served from the cache (cache.go).
		if cfg, diags, ok := loadCached(fsys, dir, opts, true); ok {
			return cfg, diags
		}
	}
	l := newLoader(fsys, dir, opts)
	defer l.done()
	l.run()
	l.finish()
	return l.cfg, l.diags
}

// loadCached is LoadFS with the cache: lookups false only writes it. ok
// is false when the load must be done again without the cache.
func loadCached(fsys fs.FS, dir string, opts Options, lookups bool) (*Config, hcl.Diagnostics, bool) {
	l := newLoader(fsys, dir, opts)
	defer l.done()
	l.cache = &cacheState{lookups: lookups}
	l.pieceFiles = map[string][]*piece{}
	l.blockPiece = map[*hclsyntax.Body]*piece{}
	l.run()
	if l.cache.aborted.Load() {
		lastCacheAbort.Store(l.cache.reason.Load())
		if lookups {
			return loadCached(fsys, dir, opts, false)
		}
		return nil, nil, false
	}
	if l.diags.HasErrors() {
		return nil, nil, false
	}
	lastCacheHits.Store(l.cache.hits.Load())
	l.saveCache()
	l.finish()
	return l.cfg, l.diags, true
}

func (l *loader) done() {
	if l.restoreGC != nil {
		l.restoreGC()
	}
}

func (l *loader) finish() {
	l.redact()
	l.hashBinaries()
	l.hashReads()
	slimFiles(l.cfg.Files)
}

// hashBinaries folds the content hashes of the module binaries into
// Config.Hash: a rebuilt module is a changed configuration.
func (l *loader) hashBinaries() {
	var bins []string
	for _, r := range l.cfg.Resources {
		if r.SourceHash != "" {
			bins = append(bins, r.Addr.String()+"="+r.SourceHash)
		}
	}
	if len(bins) == 0 {
		return
	}
	sort.Strings(bins)
	h := sha256.New()
	h.Write([]byte(l.cfg.Hash))
	for _, b := range bins {
		h.Write([]byte{0})
		h.Write([]byte(b))
	}
	l.cfg.Hash = hex.EncodeToString(h.Sum(nil))
}

// ConfigFiles lists the configuration files of fsys's root, sorted.
func ConfigFiles(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && IsConfigFile(e.Name()) {
			names = append(names, e.Name())
		} else if e.Type()&fs.ModeSymlink != 0 && IsConfigFile(e.Name()) {
			if st, err := fs.Stat(fsys, e.Name()); err == nil && st.Mode().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// parseFiles reads and parses every configuration file.
func (l *loader) parseFiles() []*hcl.File {
	names, err := ConfigFiles(l.fsys)
	if err != nil {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Cannot read configuration directory", Detail: err.Error(),
		})
		return nil
	}
	if len(names) == 0 {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No configuration files",
			Detail:   "The directory " + l.cfg.Dir + " has no *.hcl or *.hcl.json file. Create one, for example main.hcl with a daemon block.",
		})
		return nil
	}
	// Files are read and parsed in parallel (HCL's lexer dominates the cost
	// of a large configuration); results are then taken in name order, so
	// diagnostics and the hash do not depend on scheduling.
	type parsed struct {
		src    []byte
		err    error
		file   *hcl.File
		diags  hcl.Diagnostics
		pieces bool // cut at its blocks for the cache: parsed below
	}
	// The collector is relaxed before any file is parsed, so the sizes are
	// looked up first: relaxing once the bytes read reach the threshold
	// comes halfway through the parse and loses most of the gain.
	var size int64
	for _, name := range names {
		if st, err := fs.Stat(l.fsys, name); err == nil {
			size += st.Size()
		}
	}
	if size >= largeSource && l.restoreGC == nil {
		l.restoreGC = relaxGC()
	}
	results := make([]parsed, len(names))
	parse := func(i int) {
		name := names[i]
		src, tooBig, err := readConfigSource(l.fsys, name)
		if err != nil {
			results[i] = parsed{err: err}
			return
		}
		// The limits are checked before HCL's parser runs: too deep a
		// source would overflow its stack (limits.go).
		var d *hcl.Diagnostic
		if tooBig {
			d = sizeDiag(name, src)
		} else {
			d = CheckSource(src, name)
		}
		if d != nil {
			results[i] = parsed{src: src, file: refusedFile(src, d), diags: hcl.Diagnostics{d}}
			return
		}
		var f *hcl.File
		var diags hcl.Diagnostics
		if l.cache != nil && !strings.HasSuffix(name, ".json") {
			results[i] = parsed{src: src, pieces: true}
			return
		}
		if strings.HasSuffix(name, ".json") {
			f, diags = json.Parse(src, name)
		} else {
			f, diags = parseNative(src, name)
		}
		results[i] = parsed{src: src, file: f, diags: diags}
	}
	workers := min(runtime.GOMAXPROCS(0), len(names))
	if workers <= 1 {
		for i := range names {
			parse(i)
		}
	} else {
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					parse(i)
				}
			}()
		}
		for i := range names {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	h := sha256.New()
	var files []*hcl.File
	l.fileIndex = make(map[string]int, len(names))
	for i, name := range names {
		l.fileIndex[name] = i
		res := results[i]
		if res.pieces {
			res.file = l.parsePieceFile(name, i, res.src)
			if res.file == nil {
				return nil
			}
		}
		if res.err != nil {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Cannot read configuration file", Detail: res.err.Error(),
			})
			continue
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(res.src)
		h.Write([]byte{0})
		l.diags = append(l.diags, firstPerPosition(res.diags)...)
		if res.file != nil {
			l.cfg.Files[name] = res.file
			if !res.diags.HasErrors() {
				files = append(files, res.file)
			}
		}
	}
	l.cfg.Hash = hex.EncodeToString(h.Sum(nil))
	return files
}

// firstPerPosition drops parse diagnostics that follow from an earlier
// one, so that one mistake is one message: a diagnostic that starts where
// an earlier one starts (HCL reports a bad token and then the follow-on
// "Missing newline after argument" at the same place), and an "Invalid
// multi-line string" that starts on the line where the previous one ended
// (a quote left open: HCL's lexer reports each line it then reads as the
// rest of a string, up to the next quote).
func firstPerPosition(diags hcl.Diagnostics) hcl.Diagnostics {
	if len(diags) < 2 {
		return diags
	}
	type pos struct {
		file string
		byte int
	}
	const multiLine = "Invalid multi-line string"
	seen := make(map[pos]bool, len(diags))
	var open *hcl.Range // the last multi-line string's
	out := diags[:0:0]
	for _, d := range diags {
		if d.Subject != nil {
			p := pos{d.Subject.Filename, d.Subject.Start.Byte}
			if seen[p] {
				continue
			}
			seen[p] = true
			if d.Summary == multiLine {
				follows := open != nil && open.Filename == d.Subject.Filename && open.End.Line == d.Subject.Start.Line
				open = d.Subject
				if follows {
					continue
				}
			}
		}
		out = append(out, d)
	}
	return out
}
