// orch-provider-files is an example provider plugin: the runtime kind
// "files" manages files. Each daemon on it is one file under the runtime's
// root directory, with its content and mode; "running" means the file
// exists and carries orch's ownership marks (a sidecar .<name>.orch.json
// naming its project, address and configuration hash). Stopping a daemon
// removes its file.
//
// It declares the capabilities adopt (finds its files from the sidecars
// after orch lost its state), update (content and mode change in place:
// same file, same inode) and watch (notices a removed file).
//
// Build it with `make plugins`, or
//
//	go build -o examples/plugins/bin/orch-provider-files ./examples/plugins/provider/orch-provider-files
//
// and run `orch up examples/plugins/provider`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin/sdk"
	"github.com/orch-dev/orch/spec"
)

func main() { sdk.ServeProvider(&files{}) }

var (
	_ providers.Provider = (*files)(nil)
	_ providers.Adopter  = (*files)(nil)
	_ providers.Updater  = (*files)(nil)
	_ providers.Watcher  = (*files)(nil)
)

type files struct{}

func (*files) Schema() spec.RuntimeSchema {
	return spec.RuntimeSchema{
		Kind: "files",
		Runtime: []spec.AttrSchema{
			{Name: "root", Type: cty.String, Required: true, Doc: "the absolute directory the files go in"},
		},
		Daemon: []spec.AttrSchema{
			{Name: "content", Type: cty.String, Required: true, Doc: "what the file holds"},
			{Name: "mode", Type: cty.String, Default: cty.StringVal("0644"), Doc: "permissions, in octal"},
			{Name: "filename", Type: cty.String, ForcesReplacement: true,
				Doc: "the file's name under root; default: the daemon's address"},
		},
	}
}

// handle is what orch stores to find a file again.
type handle struct {
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
}

// owner is the sidecar of a file: orch's ownership marks.
type owner struct {
	Project    string `json:"project"`
	Address    string `json:"address"`
	ConfigHash string `json:"config_hash"`
	Inode      uint64 `json:"inode"`
}

func str(m map[string]cty.Value, k string) string {
	if v, ok := m[k]; ok && !v.IsNull() && v.Type() == cty.String {
		return v.AsString()
	}
	return ""
}

func rootOf(rt *spec.Runtime) (string, error) {
	if rt == nil {
		return "", errors.New("no runtime")
	}
	root := str(rt.Attrs, "root")
	if !filepath.IsAbs(root) {
		return "", &providers.Error{Op: "start", Err: fmt.Errorf("%s: root %q must be an absolute path (write \"${path.root}/...\")", rt.Addr, root)}
	}
	return root, nil
}

func sidecar(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".orch.json")
}

func inode(path string) (uint64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Sys().(*syscall.Stat_t).Ino, nil
}

func (*files) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	var resp providers.StartResponse
	r := req.Resource
	root, err := rootOf(req.Runtime)
	if err != nil {
		return resp, err
	}
	name := str(r.Attrs, "filename")
	if name == "" {
		name = r.Addr.String()
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return resp, &providers.Error{Op: "start", Attr: "filename", Err: fmt.Errorf("%s: filename %q must be a plain file name", r.Addr, name)}
	}
	mode, err := strconv.ParseUint(str(r.Attrs, "mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return resp, &providers.Error{Op: "start", Attr: "mode", Err: fmt.Errorf("%s: mode %q is not an octal permission such as \"0644\"", r.Addr, str(r.Attrs, "mode"))}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	path := filepath.Join(root, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(str(r.Attrs, "content")), os.FileMode(mode)); err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	if err := os.Chmod(tmp, os.FileMode(mode)); err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	if err := os.Rename(tmp, path); err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	ino, err := inode(path)
	if err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	side, _ := json.Marshal(owner{Project: req.Project, Address: r.Addr.String(), ConfigHash: req.ConfigHash, Inode: ino})
	if err := os.WriteFile(sidecar(path), side, 0o644); err != nil {
		return resp, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	resp.Handle, _ = json.Marshal(handle{Path: path, Inode: ino})
	resp.Observed = providers.Observed{State: providers.StateRunning, ID: path, StartedAt: time.Now()}
	return resp, nil
}

// observe finds the file of h: running when it exists with the inode
// orch started, missing otherwise.
func observe(h providers.Handle) providers.Observed {
	var hi handle
	if json.Unmarshal(h, &hi) != nil || hi.Path == "" {
		return providers.Observed{State: providers.StateUnknown}
	}
	st, err := os.Stat(hi.Path)
	if err != nil || st.Sys().(*syscall.Stat_t).Ino != hi.Inode {
		return providers.Observed{State: providers.StateMissing, ID: hi.Path}
	}
	return providers.Observed{State: providers.StateRunning, ID: hi.Path, StartedAt: st.ModTime()}
}

func (*files) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	for a, h := range req.Handles {
		resp.Objects[a] = observe(h)
	}
	return resp, nil
}

func (*files) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	var hi handle
	if err := json.Unmarshal(req.Handle, &hi); err != nil || hi.Path == "" {
		return providers.StopResponse{}, &providers.Error{Op: "stop", Err: fmt.Errorf("%s: invalid handle", req.Addr)}
	}
	if o := observe(req.Handle); o.State == providers.StateRunning {
		if err := os.Remove(hi.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return providers.StopResponse{}, &providers.Error{Op: "stop", Retryable: true, Err: err}
		}
		os.Remove(sidecar(hi.Path))
	}
	return providers.StopResponse{Observed: providers.Observed{State: providers.StateExited, ID: hi.Path}}, nil
}

// Update rewrites the content and mode in place: the same file.
func (*files) Update(ctx context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	var hi handle
	if err := json.Unmarshal(req.Handle, &hi); err != nil || hi.Path == "" {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: fmt.Errorf("%s: invalid handle", req.Resource.Addr)}
	}
	r := req.Resource
	mode, err := strconv.ParseUint(str(r.Attrs, "mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Attr: "mode", Err: fmt.Errorf("%s: mode %q is not an octal permission", r.Addr, str(r.Attrs, "mode"))}
	}
	f, err := os.OpenFile(hi.Path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Retryable: true, Err: err}
	}
	_, err = f.WriteString(str(r.Attrs, "content"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(hi.Path, os.FileMode(mode))
	}
	if err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Retryable: true, Err: err}
	}
	return providers.UpdateResponse{}, nil
}

// Adopt lists the files of the project under root, from their sidecars.
func (*files) Adopt(ctx context.Context, req providers.AdoptRequest) (providers.AdoptResponse, error) {
	var resp providers.AdoptResponse
	root, err := rootOf(req.Runtime)
	if err != nil {
		return resp, err
	}
	sides, _ := filepath.Glob(filepath.Join(root, ".*.orch.json"))
	for _, s := range sides {
		data, err := os.ReadFile(s)
		var o owner
		if err != nil || json.Unmarshal(data, &o) != nil || o.Project != req.Project {
			continue
		}
		addr, err := spec.ParseAddress(o.Address)
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(s), "."), ".orch.json")
		h, _ := json.Marshal(handle{Path: filepath.Join(root, name), Inode: o.Inode})
		resp.Objects = append(resp.Objects, providers.Adoptable{Addr: addr, Handle: h, ConfigHash: o.ConfigHash, Observed: observe(h)})
	}
	return resp, nil
}

// Watch polls the file: a file has no process to wait on.
func (*files) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	ch := make(chan providers.Observed, 1)
	go func() {
		defer close(ch)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if o := observe(req.Handle); o.State != providers.StateRunning {
				ch <- o
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}
