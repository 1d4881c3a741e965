package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// defaultPath is a process's PATH when neither its env nor orch's
// environment sets one (providers/process.DefaultPath, which spec may not
// import).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// checkPrograms reports, at its place in the command, the program of a
// daemon or job on a process runtime that is not found or not executable,
// resolved as the process provider will resolve it: against the process's
// PATH (its env's PATH, else orch's), a name with a slash against its dir.
// It is an error, unless a job may yet create the program: when the
// program would lie in the configuration directory (path.root), or the
// block runs after a job (it depends on one, directly or not); then it is
// a warning.
func (l *loader) checkPrograms() {
	cfg := l.cfg
	if cfg.Graph == nil {
		return
	}
	afterJob := map[Address]bool{}
	for _, a := range cfg.Graph.TopoOrder() {
		for _, d := range cfg.Graph.DependenciesOf(a) {
			if d.Kind == KindJob || afterJob[d] {
				afterJob[a] = true
				break
			}
		}
	}
	orchPath, ok := lookupEnv(l.opts.Environ, "PATH")
	if !ok {
		orchPath = os.Getenv("PATH")
	}
	if orchPath == "" {
		orchPath = defaultPath
	}
	type lookup struct{ name, path, dir string }
	found := map[lookup]error{}
	type place struct {
		rng  hcl.Range
		name string
	}
	reported := map[place]bool{}
	for _, r := range cfg.Resources {
		if r.Addr.Kind == KindModule || r.Runtime.Type != "process" || len(r.Command) == 0 {
			continue
		}
		n := l.nodes[r.Addr.Block().String()]
		if n == nil {
			continue
		}
		rng, ok := commandRange(n)
		if !ok {
			continue
		}
		path, ok := r.Env["PATH"]
		if !ok {
			path = orchPath
		}
		dir := r.Dir
		if dir == "" {
			dir = cfg.Dir
		}
		k := lookup{r.Command[0], path, dir}
		err, seen := found[k]
		if !seen {
			err = lookProgram(k.name, k.path, k.dir)
			found[k] = err
		}
		if err == nil {
			continue
		}
		if p := (place{rng, k.name}); reported[p] {
			continue
		} else {
			reported[p] = true
		}
		d := programDiag(err, fmt.Sprintf("The program of %s, %s.", r.Addr, err), rng)
		mayBeMade := afterJob[r.Addr] || programUnder(k.name, k.path, k.dir, cfg.Dir)
		if mayBeMade {
			d.Severity = hcl.DiagWarning
			if afterJob[r.Addr] {
				d.Detail += " It runs after a job, which may create it; if none does, it will fail to start."
			} else {
				d.Detail += " It lies in the configuration directory, where a job may create it; if none does, it will fail to start."
			}
		}
		l.diags = append(l.diags, d)
	}
	l.checkProbes(orchPath, afterJob)
}

// checkProbes reports, as checkPrograms does, the program of a health
// check's exec that is not found or not executable, resolved as the
// probe resolves it: a bare name in orch's own PATH (the env of the
// resource reaches the probe's process, not the lookup), an absolute
// path as it is. A relative path with a slash is left to the probe (it
// runs in the resource's dir, else orch's working directory). A health
// check whose program is missing never passes: without this, orch up
// showed the daemon starting until start_timeout, and nothing said why.
func (l *loader) checkProbes(orchPath string, afterJob map[Address]bool) {
	cfg := l.cfg
	reported := map[hcl.Range]bool{}
	for _, r := range cfg.Resources {
		if r.Health == nil || r.Health.Kind != HealthExec || len(r.Health.Exec) == 0 {
			continue
		}
		name := r.Health.Exec[0]
		if strings.Contains(name, "/") && !filepath.IsAbs(name) {
			continue
		}
		n := l.nodes[r.Addr.Block().String()]
		if n == nil {
			continue
		}
		rng, ok := probeRange(n)
		if !ok || reported[rng] {
			continue
		}
		err := lookProgram(name, orchPath, "/")
		if err == nil {
			continue
		}
		reported[rng] = true
		d := programDiag(err, fmt.Sprintf("The program of the health check of %s, %s.", r.Addr, err), rng)
		if afterJob[r.Addr] {
			d.Severity = hcl.DiagWarning
			d.Detail += " It runs after a job, which may create it; if none does, the check never passes."
		} else if programUnder(name, orchPath, "/", cfg.Dir) {
			d.Severity = hcl.DiagWarning
			d.Detail += " It lies in the configuration directory, where a job may create it; if none does, the check never passes."
		}
		l.diags = append(l.diags, d)
	}
}

// programDiag is the error about a program lookProgram refused (err),
// at rng: not found, or not executable.
func programDiag(err error, detail string, rng hcl.Range) *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Program not found", Detail: detail, Subject: rangePtr(rng)}
	var ne *notExecutable
	if errors.As(err, &ne) {
		d.Summary = "Program not executable"
	}
	return d
}

func lookupEnv(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(environ[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}

type notExecutable struct{ path string }

func (e *notExecutable) Error() string {
	return fmt.Sprintf("%s, is not executable (no x permission)", e.path)
}

// lookProgram resolves name as the process provider does: a name with a
// slash is a path, relative to dir; any other is searched in path, whose
// relative entries start at dir.
func lookProgram(name, path, dir string) error {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return checkProgram(p)
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if checkProgram(filepath.Join(d, name)) == nil {
			return nil
		}
	}
	return fmt.Errorf("%q, is not found in its PATH %q", name, path)
}

func checkProgram(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s, does not exist", p)
	case err != nil:
		return fmt.Errorf("%s, cannot be read: %v", p, err)
	case fi.IsDir():
		return fmt.Errorf("%s, is a directory", p)
	case fi.Mode()&0o111 == 0:
		return &notExecutable{p}
	}
	return nil
}

// programUnder reports whether the program name would be found in root: a
// path there, or a name searched in a PATH entry there.
func programUnder(name, path, dir, root string) bool {
	in := func(p string) bool {
		rel, err := filepath.Rel(root, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	if strings.Contains(name, "/") {
		if filepath.IsAbs(name) {
			return in(filepath.Clean(name))
		}
		return in(filepath.Join(dir, name))
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if in(filepath.Clean(d)) {
			return true
		}
	}
	return false
}
