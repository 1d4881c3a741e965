package docker

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// The build block and its attributes.
const (
	BlockBuild       = "build"
	BuildContext     = "context"
	BuildDockerfile  = "dockerfile"
	BuildArgs        = "args"
	BuildContextHash = "context_hash" // computed when the configuration is loaded

	// LabelBuildHash is put on the images orch builds: the hash of what
	// they were built from (context, Dockerfile, args). An image at the
	// tag with the same label is not built again.
	LabelBuildHash = "org.orch.build-hash"
)

// buildBlock is the schema of `build { context, dockerfile, args }`.
func buildBlock() spec.BlockSchema {
	return spec.BlockSchema{
		Name: BlockBuild,
		Doc:  "build the image from a directory and a Dockerfile through the Engine API",
		Attrs: []spec.AttrSchema{
			{Name: BuildContext, Type: cty.String, Required: true,
				Doc: "the build context: a directory, relative to the configuration directory"},
			{Name: BuildDockerfile, Type: cty.String, Default: cty.StringVal("Dockerfile"),
				Doc: "the Dockerfile, relative to the context"},
			{Name: BuildArgs, Type: cty.Map(cty.String),
				Doc: "build arguments (ARG)"},
		},
		Resolve: resolveBuild,
	}
}

// resolveBuild checks a build block when the configuration is loaded: the
// context is an existing directory, the Dockerfile a file inside it. It
// returns the block with context as an absolute path and context_hash,
// the hash of every file the Engine would be sent (.dockerignore
// honoured), so that an edit there changes the plan.
func resolveBuild(v cty.Value, fc spec.FileContext) (cty.Value, error) {
	ctxPath := v.GetAttr(BuildContext).AsString()
	if ctxPath == "" {
		return cty.NilVal, &spec.CheckError{Attr: BuildContext, Err: errors.New("the build context is empty; name a directory")}
	}
	fsys, abs, err := fc.DirFS(ctxPath)
	if err != nil {
		return cty.NilVal, &spec.CheckError{Attr: BuildContext, Summary: "Build context not found",
			Err: fmt.Errorf("%s is not an existing directory (relative paths start at the configuration directory)", abs)}
	}
	dockerfile := v.GetAttr(BuildDockerfile).AsString()
	if err := checkDockerfile(fsys, dockerfile); err != nil {
		return cty.NilVal, &spec.CheckError{Attr: BuildDockerfile, Summary: "Dockerfile not found",
			Err: fmt.Errorf("%q in the build context %s: %v", dockerfile, abs, err)}
	}
	files, err := contextFiles(fsys, dockerfile)
	if err != nil {
		return cty.NilVal, &spec.CheckError{Attr: BuildContext, Summary: "Unreadable build context", Err: fmt.Errorf("%s: %v", abs, err)}
	}
	sum, err := hashContext(fsys, files)
	if err != nil {
		return cty.NilVal, &spec.CheckError{Attr: BuildContext, Summary: "Unreadable build context", Err: fmt.Errorf("%s: %v", abs, err)}
	}
	m := v.AsValueMap()
	m[BuildContext] = cty.StringVal(abs)
	m[BuildContextHash] = cty.StringVal(sum)
	return cty.ObjectVal(m), nil
}

func checkDockerfile(fsys fs.FS, name string) error {
	if name == "" || path.IsAbs(name) || !fs.ValidPath(path.Clean(name)) {
		return errors.New("write a path inside the context, such as \"Dockerfile\" or \"docker/web.Dockerfile\"")
	}
	st, err := fs.Stat(fsys, path.Clean(name))
	if err != nil {
		return errors.New("no such file")
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// build is a daemon's build block, read back from its attributes.
type build struct {
	Context    string            // absolute
	Dockerfile string            // relative to Context
	Args       map[string]string // may be nil
	Hash       string            // context_hash as planned
}

func buildOf(r *spec.Resource) (*build, error) {
	v, ok := r.Attrs[BlockBuild]
	if !ok || v == cty.NilVal || v.IsNull() {
		return nil, nil
	}
	if !v.Type().IsObjectType() || !v.Type().HasAttribute(BuildContext) || !v.Type().HasAttribute(BuildContextHash) {
		return nil, errors.New("build: not a resolved build block")
	}
	b := &build{Context: v.GetAttr(BuildContext).AsString(), Dockerfile: "Dockerfile", Hash: v.GetAttr(BuildContextHash).AsString()}
	if d := v.GetAttr(BuildDockerfile); !d.IsNull() {
		b.Dockerfile = path.Clean(d.AsString())
	}
	if a := v.GetAttr(BuildArgs); !a.IsNull() {
		b.Args = map[string]string{}
		for k, x := range a.AsValueMap() {
			b.Args[k] = x.AsString()
		}
	}
	return b, nil
}

// buildHash identifies what an image is built from: the context's files,
// the Dockerfile's name and the build arguments.
func (b *build) buildHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "context %s\x00dockerfile %s\x00", b.Hash, b.Dockerfile)
	keys := make([]string, 0, len(b.Args))
	for k := range b.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "arg %s=%s\x00", k, b.Args[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

var nonRepo = regexp.MustCompile(`[^a-z0-9]+`)

// BuildTag is the tag orch builds the image of a daemon or job into when
// it sets no image: orch-build/<project>/<name>:<16 hex digits of the
// build hash>, lower case, other characters written as '-'. The instances
// of a count or for_each share it.
func BuildTag(project, name, buildHash string) string {
	clean := func(s string) string {
		s = strings.Trim(nonRepo.ReplaceAllString(strings.ToLower(s), "-"), "-")
		if s == "" {
			s = "x"
		}
		return s
	}
	return "orch-build/" + clean(project) + "/" + clean(name) + ":" + buildHash[:16]
}

// ensureBuilt builds b into tag unless an image at tag carries b's build
// hash already. Builds of one tag are serialised, so that the instances of
// a count build it once.
func (p *Provider) ensureBuilt(ctx context.Context, e engine, addr spec.Address, b *build, tag, project string) error {
	hash := b.buildHash()
	mu := p.buildLock(e.host + " " + tag)
	mu.Lock()
	defer mu.Unlock()
	img, err := e.ImageInspect(ctx, tag)
	switch {
	case err == nil && img.Config != nil && img.Config.Labels[LabelBuildHash] == hash:
		return nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return opErr("start", addr, e, err)
	}
	fsys := os.DirFS(b.Context)
	files, err := contextFiles(fsys, b.Dockerfile)
	if err != nil {
		return &providers.Error{Op: "start", Attr: BlockBuild, Err: fmt.Errorf("%s: reading the build context %s: %w", addr, b.Context, err)}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, fsys, files)) }()
	defer pr.Close()
	args := map[string]*string{}
	for k, v := range b.Args {
		args[k] = &v
	}
	res, err := e.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: b.Dockerfile, BuildArgs: args, Remove: true, ForceRemove: true,
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelProject: project, LabelBuildHash: hash},
	})
	if err != nil {
		return buildErr(addr, e, tag, b, err)
	}
	defer res.Body.Close()
	if err := readBuildOutput(res.Body); err != nil {
		return buildErr(addr, e, tag, b, err)
	}
	return nil
}

func buildErr(addr spec.Address, e engine, tag string, b *build, err error) error {
	retry := unreachable(err) || errors.Is(err, context.DeadlineExceeded)
	return &providers.Error{Op: "start", Attr: BlockBuild, Retryable: retry, Unreachable: unreachable(err),
		Err: fmt.Errorf("%s: building image %s from %s (%s) on Docker Engine %s: %w", addr, tag, b.Context, b.Dockerfile, e.host, err)}
}

func (p *Provider) buildLock(key string) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.builds == nil {
		p.builds = map[string]*sync.Mutex{}
	}
	mu := p.builds[key]
	if mu == nil {
		mu = &sync.Mutex{}
		p.builds[key] = mu
	}
	return mu
}

// readBuildOutput reads the Engine's JSON progress stream to its end and
// returns the build's error, as the Engine words it.
func readBuildOutput(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil {
			continue
		}
		if m := msg.ErrorDetail.Message; m != "" {
			return errors.New(strings.TrimSpace(m))
		}
		if msg.Error != "" {
			return errors.New(strings.TrimSpace(msg.Error))
		}
	}
	return sc.Err()
}

// contextFiles lists the paths of fsys the Engine is sent, sorted: every
// file, directory and symbolic link not excluded by .dockerignore, and
// always the Dockerfile and .dockerignore themselves (as docker build
// does).
func contextFiles(fsys fs.FS, dockerfile string) ([]string, error) {
	ign, err := readDockerignore(fsys)
	if err != nil {
		return nil, err
	}
	var out []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if p != dockerfile && p != ".dockerignore" && ign.excluded(p) {
			if d.IsDir() && !ign.hasExceptions() {
				return fs.SkipDir
			}
			return nil
		}
		out = append(out, p)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// hashContext hashes the listed paths: name, type, executable bit, and the
// content of a file or the target of a link.
func hashContext(fsys fs.FS, files []string) (string, error) {
	h := sha256.New()
	for _, p := range files {
		st, err := fs.Lstat(fsys, p)
		if err != nil {
			return "", err
		}
		mode := st.Mode()
		fmt.Fprintf(h, "%s\x00%s\x00%o\x00", p, mode.Type().String(), mode.Perm()&0o111)
		switch {
		case mode.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00", target)
		case mode.IsRegular():
			f, err := fsys.Open(p)
			if err != nil {
				return "", err
			}
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "\x00%d\x00", n)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// writeContext writes the listed paths of fsys as the tar stream the
// Engine's build reads.
func writeContext(w io.Writer, fsys fs.FS, files []string) error {
	tw := tar.NewWriter(w)
	for _, p := range files {
		st, err := fs.Lstat(fsys, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: p, Mode: int64(st.Mode().Perm()), ModTime: st.ModTime(), Format: tar.FormatPAX}
		switch m := st.Mode(); {
		case m.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, p+"/", int64(m.Perm())|0o700
		case m.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case m.IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size()
		default:
			continue // devices, sockets and pipes are not sent
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s changed while it was sent: %w", p, err)
			}
		}
	}
	return tw.Close()
}

// dockerignore is the subset of .dockerignore orch reads: one pattern a
// line, # comments, ! exceptions (the last matching line wins), * ? and
// [...] within a path element, ** for any number of elements; a pattern
// that matches a directory excludes everything below it.
type dockerignore struct {
	rules []ignoreRule
}

type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

func readDockerignore(fsys fs.FS) (*dockerignore, error) {
	b, err := fs.ReadFile(fsys, ".dockerignore")
	if errors.Is(err, fs.ErrNotExist) {
		return &dockerignore{}, nil
	}
	if err != nil {
		return nil, err
	}
	di := &dockerignore{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		if neg {
			line = strings.TrimSpace(line[1:])
		}
		pat := path.Clean(strings.TrimPrefix(line, "/"))
		if pat == "." {
			continue
		}
		re, err := globRegexp(pat)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %q: %v", line, err)
		}
		di.rules = append(di.rules, ignoreRule{re: re, negate: neg})
	}
	return di, nil
}

func (di *dockerignore) hasExceptions() bool {
	for _, r := range di.rules {
		if r.negate {
			return true
		}
	}
	return false
}

// excluded reports whether p (slash-separated, relative) or one of its
// parent directories is excluded.
func (di *dockerignore) excluded(p string) bool {
	out := false
	for _, r := range di.rules {
		if r.re.MatchString(p) || matchesParent(r.re, p) {
			out = !r.negate
		}
	}
	return out
}

func matchesParent(re *regexp.Regexp, p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && re.MatchString(p[:i]) {
			return true
		}
	}
	return false
}

func globRegexp(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '*' && i+1 < len(pat) && pat[i+1] == '*':
			i++
			if i+1 < len(pat) && pat[i+1] == '/' {
				i++
				b.WriteString("(?:.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(pat[i:], ']')
			if j < 0 {
				return nil, errors.New("unclosed [")
			}
			class := pat[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j
		case c == '\\' && i+1 < len(pat):
			i++
			b.WriteString(regexp.QuoteMeta(string(pat[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
