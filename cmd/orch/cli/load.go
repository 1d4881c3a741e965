package cli

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/pflag"
)

// varFlags are the -var and -var-file flags of the commands that load a
// configuration.
type varFlags struct {
	vars     []string
	varFiles []string
	// environ, when set, replaces the process environment as the source
	// of ORCH_VAR_* (a saved plan brings its own).
	environ []string
}

func (v *varFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&v.vars, "var", nil, "set a variable: `NAME=VALUE` (repeatable; later ones win)")
	fs.StringArrayVar(&v.varFiles, "var-file", nil, "read variables from an HCL `FILE` of NAME = VALUE lines (repeatable; applied before -var)")
}

// loadResult is a loaded configuration with everything needed to report
// on it.
type loadResult struct {
	cfg   *spec.Config
	diags hcl.Diagnostics
	// files holds every source a diagnostic may point into, keyed by the
	// name its ranges carry: configuration files and -var-file files.
	files map[string]*hcl.File
}

// loadConfig loads the configuration in dir with the variables of vf and
// the environment's ORCH_VAR_*. Diagnostics about configuration files are
// renamed to the path relative to where orch was started (dir/main.hcl),
// so that they can be opened as printed.
func (a *App) loadConfig(dir string, vf *varFlags) loadResult {
	if p := a.loaded; p != nil {
		a.loaded = nil
		if p.dir == dir && p.vf == vf && p.checkPrograms == a.checkPrograms {
			return p.res
		}
	}
	res := loadResult{files: map[string]*hcl.File{}}
	opts := spec.Options{
		Schemas:       Schemas(),
		Vars:          vf.vars,
		Environ:       os.Environ(),
		CheckPrograms: a.checkPrograms,
		// unchanged daemon and job blocks come from the state
		// directory's cache instead of being parsed and evaluated again
		Cache:         true,
		CacheStateDir: a.settings.StateDir,
		MakeStateDir:  a.makesState,
	}
	if vf.environ != nil {
		opts.Environ = vf.environ
	}
	for _, name := range vf.varFiles {
		src, err := os.ReadFile(name)
		if err != nil {
			res.diags = append(res.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read variables file",
				Detail:   "The -var-file " + name + " cannot be read: " + err.Error(),
			})
			continue
		}
		opts.VarFiles = append(opts.VarFiles, spec.VarFile{Name: name, Src: src})
		res.files[name] = &hcl.File{Bytes: src}
	}
	if res.diags.HasErrors() {
		return res
	}
	cfg, diags := spec.Load(dir, opts)
	if !diags.HasErrors() && cfg != nil {
		// Provider plugins declare their schemas: launch them and load
		// again, validated by those (plugins.go).
		schemas, pd := a.pluginSet().schemas(cfg)
		if len(schemas) > 0 && !pd.HasErrors() {
			opts.PluginSchemas = schemas
			cfg, diags = spec.Load(dir, opts)
		}
		diags = append(diags, pd...)
	}
	res.cfg = cfg
	a.noteSecrets(cfg)
	rename := func(name string) string { return name }
	if filepath.Clean(dir) != "." {
		rename = func(name string) string { return filepath.Join(dir, name) }
	}
	renamed := map[string]bool{}
	if cfg != nil {
		for name, f := range cfg.Files {
			if _, clash := res.files[rename(name)]; clash {
				continue
			}
			res.files[rename(name)] = f
			renamed[name] = true
		}
	}
	fix := func(r *hcl.Range) *hcl.Range {
		if r == nil || !renamed[r.Filename] {
			return r
		}
		c := *r
		c.Filename = rename(r.Filename)
		return &c
	}
	for _, d := range diags {
		c := *d
		c.Subject = fix(d.Subject)
		c.Context = fix(d.Context)
		res.diags = append(res.diags, &c)
	}
	return res
}
