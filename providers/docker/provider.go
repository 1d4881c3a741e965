package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

var (
	_ providers.Provider  = (*Provider)(nil)
	_ providers.Deleter   = (*Provider)(nil)
	_ providers.Adopter   = (*Provider)(nil)
	_ providers.Updater   = (*Provider)(nil)
	_ providers.Signaler  = (*Provider)(nil)
	_ providers.LogReader = (*Provider)(nil)
)

// DefaultStopTimeout is used when a StopRequest has no timeout.
const DefaultStopTimeout = 10 * time.Second

// Options configures a Provider. The zero value is ready to use.
type Options struct {
	// PullTimeout bounds the pull of a missing image; default 10 minutes.
	PullTimeout time.Duration
	// Kind is the runtime kind served: Kind ("docker", the default) or
	// KindPodman, the same provider pointed at Podman's Docker-compatible
	// API (its default host is DefaultPodmanHost).
	Kind string
}

// Provider is the runtime "docker": daemons and jobs as containers of a
// Docker Engine, through its API. Its methods are safe for concurrent use.
// It keeps one API client per Engine address, made on first use; Close
// releases them. Containers it starts outlive it and orch.
type Provider struct {
	opts Options

	mu      sync.Mutex
	clients map[string]*client.Client
	builds  map[string]*sync.Mutex // one per Engine and tag being built
}

// New returns a Provider. It connects to nothing until a method needs an
// Engine.
func New(opts Options) *Provider {
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = 10 * time.Minute
	}
	if opts.Kind == "" {
		opts.Kind = Kind
	}
	return &Provider{opts: opts, clients: map[string]*client.Client{}}
}

// Schema describes the runtime kind served: "docker" or "podman".
func (p *Provider) Schema() spec.RuntimeSchema {
	if p.opts.Kind == KindPodman {
		return PodmanSchema()
	}
	return Schema()
}

// defaultHost is the Engine address of a runtime that sets no host.
func (p *Provider) defaultHost() string {
	if p.opts.Kind == KindPodman {
		return DefaultPodmanHost()
	}
	return DefaultHost()
}

// Close releases the API clients. The Provider can still be used: a
// later call makes a new client.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	for h, c := range p.clients {
		err = errors.Join(err, c.Close())
		delete(p.clients, h)
	}
	return err
}

// hostOf is the Engine address of rt: its host attribute, else the
// kind's default.
func (p *Provider) hostOf(rt *spec.Runtime) string {
	if rt != nil {
		if v, ok := rt.Attrs[AttrHost]; ok && v.IsKnown() && !v.IsNull() && v.AsString() != "" {
			return v.AsString()
		}
	}
	return p.defaultHost()
}

// engine is one Engine as a method sees it: its client and address.
type engine struct {
	*client.Client
	host string
}

func (p *Provider) engine(rt *spec.Runtime) (engine, error) {
	host := p.hostOf(rt)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[host]; c != nil {
		return engine{c, host}, nil
	}
	c, err := client.New(client.WithHost(host), client.WithUserAgent("orch"))
	if err != nil {
		return engine{}, fmt.Errorf("Docker Engine %s: %w", host, err)
	}
	p.clients[host] = c
	return engine{c, host}, nil
}

// opErr wraps a failure of op on addr. Failures to reach the Engine are
// retryable, and unreachable; so are the Engine's own unavailable/internal
// errors retryable.
func opErr(op string, addr spec.Address, e engine, err error) error {
	away := unreachable(err)
	retry := away || cerrdefs.IsUnavailable(err) || cerrdefs.IsInternal(err) || errors.Is(err, context.DeadlineExceeded)
	return &providers.Error{Op: op, Retryable: retry, Unreachable: away, Err: fmt.Errorf("%s: Docker Engine %s: %w", addr, e.host, err)}
}

// unreachable says whether err is a failure to reach the Engine at all,
// which says nothing about a container: no connection (the socket is gone,
// refused, not ours to open), or a connection that broke before the
// Engine answered (it went away during the call). An error the Engine
// answered with is not.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if client.IsErrConnectionFailed(err) {
		return true
	}
	var ue *url.Error // the HTTP transport's: the Engine did not answer
	return errors.As(err, &ue) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, net.ErrClosed))
}

func userErr(op string, addr spec.Address, format string, args ...any) error {
	return &providers.Error{Op: op, Err: fmt.Errorf(addr.String()+": "+format, args...)}
}

// owned reports whether a container carries orch's ownership label.
func owned(c container.InspectResponse) bool {
	return c.Config != nil && c.Config.Labels[LabelManagedBy] == ManagedBy
}

// inspect finds the container of a handle: ok is false when it is gone.
// A container that is not orch's is an error: orch never touches it.
func (e engine) inspect(ctx context.Context, id string) (c container.InspectResponse, ok bool, err error) {
	res, err := e.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	if !owned(res.Container) {
		return res.Container, true, fmt.Errorf("container %s is not managed by orch (no %s=%s label); orch leaves it alone",
			shortID(id), LabelManagedBy, ManagedBy)
	}
	return res.Container, true, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// observed turns an inspection into an Observed.
func observed(c container.InspectResponse) providers.Observed {
	obs := providers.Observed{State: providers.StateUnknown, ID: c.ID}
	st := c.State
	if st == nil {
		return obs
	}
	obs.Pid = st.Pid
	if t, err := time.Parse(time.RFC3339Nano, st.StartedAt); err == nil && !t.IsZero() && t.Year() > 1 {
		obs.StartedAt = t
	}
	switch {
	case st.Running || st.Restarting || st.Paused:
		obs.State = providers.StateRunning
	case st.Status == container.StateCreated && st.FinishedAt == "0001-01-01T00:00:00Z":
		// Created but never started: it has not run, so it did not exit 0.
		obs.State = providers.StateMissing
	default:
		obs.State = providers.StateExited
		obs.ExitCode = st.ExitCode
		if st.OOMKilled {
			obs.Signal = "SIGKILL"
		}
	}
	return obs
}

// Start creates and starts the container of req.Resource, named
// ContainerName(project, address) and labelled with orch's ownership
// labels, and returns once the Engine reports it started. A missing image
// is pulled first; an image that is neither local nor pullable, a port
// already in use, or a name taken by a container orch does not own is an
// error that says so. A container of the same address left by an earlier
// run that is not running any more is removed first; one that runs the
// same configuration is taken over (a crash between create and recording
// the handle). A container created by a Start that then fails is removed.
func (p *Provider) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	var resp providers.StartResponse
	r := req.Resource
	if r == nil {
		return resp, &providers.Error{Op: "start", Err: errors.New("no resource")}
	}
	addr := r.Addr
	runtime := ""
	if req.Runtime != nil {
		runtime = req.Runtime.Addr.String()
	}
	cs, err := buildSpec(r, req.Project, req.ConfigHash, runtime)
	if err == nil {
		err = limitsOf(r, cs)
	}
	if err == nil {
		err = withNotify(cs, r, req.StateDir)
	}
	if err != nil {
		return resp, userErr("start", addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return resp, opErr("start", addr, e, err)
	}
	if cs.Build != nil {
		if err := p.ensureBuilt(ctx, e, addr, cs.Build, cs.Config.Image, req.Project); err != nil {
			return resp, err
		}
	}
	id, existing, err := p.create(ctx, e, addr, cs, req.ConfigHash)
	if err != nil {
		return resp, err
	}
	if existing == nil {
		if _, err := e.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			// Leave nothing behind: the next Start creates it again.
			rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_, _ = e.ContainerRemove(rmCtx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			cancel()
			if perr := portInUse(err, cs.Ports); perr != "" {
				return resp, &providers.Error{Op: "start", Attr: "ports",
					Err: fmt.Errorf("%s: %s on Docker Engine %s: %v", addr, perr, e.host, err)}
			}
			return resp, opErr("start", addr, e, err)
		}
	}
	c, ok, err := e.inspect(ctx, id)
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("container %s was removed as soon as it started", shortID(id))
		}
		return resp, opErr("start", addr, e, err)
	}
	resp.Handle = HandleInfo{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/")}.Encode()
	resp.Observed = observed(c)
	return resp, nil
}

// create creates the container, pulling its image or clearing its name
// first when needed. existing is set when a running container of the same
// address and configuration was taken over instead.
func (p *Provider) create(ctx context.Context, e engine, addr spec.Address, cs *containerSpec, hash string) (id string, existing *container.InspectResponse, err error) {
	pulled, cleared := false, false
	for {
		res, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Name: cs.Name, Config: cs.Config, HostConfig: cs.Host})
		switch {
		case err == nil:
			return res.ID, nil, nil
		case cerrdefs.IsNotFound(err) && !pulled && strings.Contains(strings.ToLower(err.Error()), "image"):
			pulled = true
			if perr := p.pull(ctx, e, cs.Config.Image); perr != nil {
				return "", nil, &providers.Error{Op: "start", Retryable: unreachable(perr), Unreachable: unreachable(perr), Attr: "image",
					Err: fmt.Errorf("%s: image %q not found locally on Docker Engine %s and cannot be pulled: %w", addr, cs.Config.Image, e.host, perr)}
			}
		case (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is already in use")) && !cleared:
			// (Podman answers a taken name with a 500 that says so.)
			cleared = true
			c, ok, ierr := e.inspect(ctx, cs.Name)
			switch {
			case ierr != nil && ok:
				return "", nil, userErr("start", addr, "the name %q is taken on Docker Engine %s: %v", cs.Name, e.host, ierr)
			case ierr != nil:
				return "", nil, opErr("start", addr, e, ierr)
			case !ok:
				// Gone meanwhile: try again.
			case c.Config.Labels[LabelAddress] != addr.String():
				return "", nil, userErr("start", addr, "the name %q is taken on Docker Engine %s by orch's container of %s",
					cs.Name, e.host, c.Config.Labels[LabelAddress])
			case observed(c).State == providers.StateRunning && c.Config.Labels[LabelConfigHash] == hash:
				return c.ID, &c, nil
			case observed(c).State == providers.StateRunning:
				// create_before_destroy: the old instance still runs.
				cs.Name += "-" + hash[:min(12, len(hash))]
			default:
				if _, err := e.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
					return "", nil, opErr("start", addr, e, fmt.Errorf("removing the stopped container %s that holds the name %q: %w", shortID(c.ID), cs.Name, err))
				}
			}
		default:
			return "", nil, opErr("start", addr, e, err)
		}
	}
}

// pull pulls image, bounded by Options.PullTimeout.
func (p *Provider) pull(ctx context.Context, e engine, image string) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.PullTimeout)
	defer cancel()
	rc, err := e.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	return rc.Wait(ctx)
}

var hostPortRE = regexp.MustCompile(`(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]*\]|::):(\d{1,5})\b`)

// portInUse recognizes the Engine's "port is already allocated" (another
// container) and "address already in use" (another process) and names the
// port as declared; "" when err is something else.
func portInUse(err error, ports []portSpec) string {
	msg := err.Error()
	if !strings.Contains(msg, "port is already allocated") && !strings.Contains(msg, "address already in use") {
		return ""
	}
	hostPort := ""
	if m := hostPortRE.FindStringSubmatch(msg); m != nil {
		hostPort = m[1]
	}
	for _, ps := range ports {
		if ps.HostPort == hostPort {
			return fmt.Sprintf("host port %s (ports entry %q) is already in use", hostPort, ps.declared())
		}
	}
	if hostPort != "" {
		return fmt.Sprintf("host port %s is already in use", hostPort)
	}
	return "a published port is already in use"
}

func (ps portSpec) declared() string {
	s := ps.HostPort + ":" + ps.Port.String()
	if ps.HostIP != "" {
		s = ps.HostIP + ":" + s
	}
	return strings.TrimSuffix(s, "/tcp")
}

// Observe inspects the container of each handle: running (also paused or
// restarting), exited with its exit code, or missing when it is gone or
// is not orch's. An Engine that cannot be reached is an error.
func (p *Provider) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: make(map[spec.Address]providers.Observed, len(req.Handles))}
	if len(req.Handles) == 0 {
		return resp, nil
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "observe", Err: err}
	}
	type item struct {
		addr spec.Address
		h    providers.Handle
		obs  providers.Observed
		err  error
	}
	items := make([]*item, 0, len(req.Handles))
	for a, h := range req.Handles {
		items = append(items, &item{addr: a, h: h})
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			hi, err := ParseHandle(it.h)
			if err != nil {
				it.obs = providers.Observed{State: providers.StateUnknown}
				return
			}
			c, ok, err := e.inspect(ctx, hi.ID)
			switch {
			case err != nil && ok: // not orch's: not the instance
				it.obs = providers.Observed{State: providers.StateMissing, ID: hi.ID}
			case err != nil:
				it.err = err
			case !ok:
				it.obs = providers.Observed{State: providers.StateMissing, ID: hi.ID}
			default:
				it.obs = observed(c)
			}
		}()
	}
	wg.Wait()
	for _, it := range items {
		if it.err != nil {
			return resp, opErr("observe", it.addr, e, it.err)
		}
		resp.Objects[it.addr] = it.obs
	}
	return resp, nil
}

// Stop stops the container with req.Signal (default SIGTERM) and, after
// req.Timeout (default 10s, rounded up to whole seconds as the Engine
// counts), SIGKILL; it returns once the container has stopped. The
// container is kept (Delete removes it). A container already gone or
// stopped is success.
func (p *Provider) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	var resp providers.StopResponse
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return resp, userErr("stop", req.Addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return resp, opErr("stop", req.Addr, e, err)
	}
	c, ok, err := e.inspect(ctx, hi.ID)
	if err != nil {
		return resp, opErr("stop", req.Addr, e, err)
	}
	if !ok {
		resp.Observed = providers.Observed{State: providers.StateMissing, ID: hi.ID}
		return resp, nil
	}
	if obs := observed(c); obs.State != providers.StateRunning {
		resp.Observed = obs
		return resp, nil
	}
	sig := req.Signal
	if sig.Num == 0 {
		sig = spec.Signal{Name: "SIGTERM", Num: syscall.SIGTERM}
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	secs := int(math.Ceil(timeout.Seconds()))
	if _, err := e.ContainerStop(ctx, hi.ID, client.ContainerStopOptions{Signal: sig.Name, Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return resp, opErr("stop", req.Addr, e, err)
	}
	c, ok, err = e.inspect(ctx, hi.ID)
	switch {
	case err != nil:
		return resp, opErr("stop", req.Addr, e, err)
	case !ok:
		resp.Observed = providers.Observed{State: providers.StateMissing, ID: hi.ID}
	default:
		resp.Observed = observed(c)
		resp.Killed = sig.Num != syscall.SIGKILL && resp.Observed.ExitCode == 128+int(syscall.SIGKILL)
		if resp.Killed {
			resp.Observed.Signal = "SIGKILL"
		}
	}
	return resp, nil
}

// Delete removes a stopped container and its anonymous volumes. A
// container that still runs is an error: stop it first. One already gone
// is success.
func (p *Provider) Delete(ctx context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.DeleteResponse{}, userErr("delete", req.Addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.DeleteResponse{}, opErr("delete", req.Addr, e, err)
	}
	c, ok, err := e.inspect(ctx, hi.ID)
	if err != nil {
		return providers.DeleteResponse{}, opErr("delete", req.Addr, e, err)
	}
	if !ok {
		return providers.DeleteResponse{}, nil
	}
	if observed(c).State == providers.StateRunning {
		return providers.DeleteResponse{}, userErr("delete", req.Addr, "container %s still runs; stop it first", shortID(hi.ID))
	}
	if _, err := e.ContainerRemove(ctx, hi.ID, client.ContainerRemoveOptions{RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return providers.DeleteResponse{}, opErr("delete", req.Addr, e, err)
	}
	return providers.DeleteResponse{}, nil
}

// Signal sends req.Signal to the container's main process (ContainerKill).
func (p *Provider) Signal(ctx context.Context, req providers.SignalRequest) (providers.SignalResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "%w", err)
	}
	if req.Signal.Name == "" {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "no signal")
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.SignalResponse{}, opErr("signal", req.Addr, e, err)
	}
	c, ok, err := e.inspect(ctx, hi.ID)
	if err != nil {
		return providers.SignalResponse{}, opErr("signal", req.Addr, e, err)
	}
	if !ok || observed(c).State != providers.StateRunning {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "container %s is not running", shortID(hi.ID))
	}
	if _, err := e.ContainerKill(ctx, hi.ID, client.ContainerKillOptions{Signal: req.Signal.Name}); err != nil {
		return providers.SignalResponse{}, opErr("signal", req.Addr, e, err)
	}
	return providers.SignalResponse{}, nil
}

// Logs opens the container's log as the Engine keeps it (stdout and
// stderr interleaved, without the Engine's stream headers), from its
// start or its last req.Tail lines. With req.Follow the reader goes on
// with what the container writes until ctx is done or the container
// stops; without, it ends at the current end of the log.
func (p *Provider) Logs(ctx context.Context, req providers.LogsRequest) (providers.LogsResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.LogsResponse{}, userErr("logs", req.Addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.LogsResponse{}, opErr("logs", req.Addr, e, err)
	}
	c, ok, err := e.inspect(ctx, hi.ID)
	if err != nil {
		return providers.LogsResponse{}, opErr("logs", req.Addr, e, err)
	}
	if !ok {
		return providers.LogsResponse{}, userErr("logs", req.Addr, "container %s is gone, and its log with it", shortID(hi.ID))
	}
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: req.Follow}
	switch {
	case req.Tail > 0:
		opts.Tail = strconv.Itoa(req.Tail)
	case req.Tail < 0:
		opts.Tail = "0"
	}
	rc, err := e.ContainerLogs(ctx, hi.ID, opts)
	if err != nil {
		return providers.LogsResponse{}, opErr("logs", req.Addr, e, err)
	}
	if c.Config != nil && c.Config.Tty {
		return providers.LogsResponse{Log: rc}, nil
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return providers.LogsResponse{Log: &demuxed{PipeReader: pr, src: rc}}, nil
}

// demuxed closes the Engine's stream along with the pipe.
type demuxed struct {
	*io.PipeReader
	src io.Closer
}

func (d *demuxed) Close() error {
	d.src.Close()
	return d.PipeReader.Close()
}

// Adopt lists the running containers of req.Project on req.Runtime from
// their labels (managed-by, project, runtime), sorted by address. Stopped
// ones are left for Start, which removes the one that holds its name.
func (p *Provider) Adopt(ctx context.Context, req providers.AdoptRequest) (providers.AdoptResponse, error) {
	var resp providers.AdoptResponse
	e, err := p.engine(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "adopt", Err: err}
	}
	f := client.Filters{}.Add("label", LabelManagedBy+"="+ManagedBy)
	if req.Project != "" {
		f.Add("label", LabelProject+"="+req.Project)
	}
	if req.Runtime != nil {
		f.Add("label", LabelRuntime+"="+req.Runtime.Addr.String())
	}
	list, err := e.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return resp, &providers.Error{Op: "adopt", Retryable: unreachable(err), Unreachable: unreachable(err),
			Err: fmt.Errorf("Docker Engine %s: %w", e.host, err)}
	}
	// Inspected 8 at a time, as Observe does.
	found := make([]*providers.Adoptable, len(list.Items))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range list.Items {
		if s.Labels[LabelManagedBy] != ManagedBy || s.State != container.StateRunning {
			continue
		}
		addr, err := spec.ParseAddress(s.Labels[LabelAddress])
		if err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, ok, err := e.inspect(ctx, s.ID)
			if err != nil || !ok {
				return
			}
			obs := observed(c)
			if obs.State != providers.StateRunning {
				return
			}
			found[i] = &providers.Adoptable{
				Addr:       addr,
				Handle:     HandleInfo{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/")}.Encode(),
				ConfigHash: s.Labels[LabelConfigHash],
				Observed:   obs,
			}
		}()
	}
	wg.Wait()
	for _, a := range found {
		if a != nil {
			resp.Objects = append(resp.Objects, *a)
		}
	}
	sort.Slice(resp.Objects, func(i, j int) bool { return resp.Objects[i].Addr.Less(resp.Objects[j].Addr) })
	return resp, nil
}

// UpdateRequest asks for a running container's limits (memory, cpus) to
// be changed in place.
// Update changes the memory and CPU limits of a running container in
// place (ContainerUpdate), the attributes the schema marks as not forcing
// replacement. A limit that is removed from the configuration stays as it
// is on the running container until it is next replaced: the Engine has
// no "no limit" update.
func (p *Provider) Update(ctx context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	if req.Resource == nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: errors.New("no resource")}
	}
	addr := req.Resource.Addr
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.UpdateResponse{}, userErr("update", addr, "%w", err)
	}
	res, err := resources(req.Resource)
	if err != nil {
		return providers.UpdateResponse{}, userErr("update", addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.UpdateResponse{}, opErr("update", addr, e, err)
	}
	c, ok, err := e.inspect(ctx, hi.ID)
	if err != nil {
		return providers.UpdateResponse{}, opErr("update", addr, e, err)
	}
	if !ok {
		return providers.UpdateResponse{}, userErr("update", addr, "container %s is gone", shortID(hi.ID))
	}
	if res.Memory > 0 && c.HostConfig != nil && c.HostConfig.MemorySwap > 0 {
		// The Engine refuses a memory limit above the swap limit it
		// derived (twice the memory) when the container was created.
		res.MemorySwap = 2 * res.Memory
	}
	out, err := e.ContainerUpdate(ctx, hi.ID, client.ContainerUpdateOptions{Resources: &res})
	if err != nil {
		return providers.UpdateResponse{}, opErr("update", addr, e, err)
	}
	return providers.UpdateResponse{Warnings: out.Warnings}, nil
}
