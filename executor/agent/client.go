package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/orch-dev/orch/providers/owned"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// ErrNoAgent is returned by Dial when nothing listens on the socket.
var ErrNoAgent = errors.New("no agent listens")

// Client talks to an agent over its socket. Its methods are safe for
// concurrent use.
type Client struct {
	Socket string
	// Variables, when set, is the spec.Config.VariablesHash of the
	// configuration as the caller loaded it: plan and apply are refused
	// when the agent's variables differ.
	Variables string
	// Waiting, when set, is told the instance whose change in flight a
	// request waits for, when the agent says so (a 102 Processing answer
	// with WaitingHeader) before its final answer.
	Waiting func(addr string)
	hc      *http.Client
}

// Dial connects to the agent's socket once to see that one listens, and
// returns a client for it. It returns an error wrapping ErrNoAgent when
// the socket does not exist or nothing accepts on it (a stale socket of a
// killed agent).
//
// A socket in a directory, or a socket itself, that another user owns or
// can write is refused (owned.Check): whoever could put it there could
// answer for the agent.
func Dial(socket string) (*Client, error) {
	for _, p := range []string{filepath.Dir(socket), socket} {
		if err := owned.Check(p); err != nil {
			return nil, fmt.Errorf("not talking to the agent socket %s: %w", socket, err)
		}
	}
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		if isConnRefused(err) {
			return nil, fmt.Errorf("%w on %s", ErrNoAgent, socket)
		}
		return nil, err
	}
	// A connection is not an agent: the socket of a killed agent may still
	// be held (a process it was forking keeps a copy of it until it
	// executes), and then the kernel queues connections that nobody will
	// ever answer, or resets them. A live agent answers an unknown path at
	// once, from its server's goroutine, whatever its engine is doing.
	c.SetDeadline(time.Now().Add(2 * time.Second))
	_, werr := io.WriteString(c, "GET /v1/-ping HTTP/1.0\r\nHost: agent\r\n\r\n")
	line := make([]byte, 5)
	_, rerr := io.ReadFull(c, line)
	c.Close()
	if werr != nil || rerr != nil || string(line) != "HTTP/" {
		return nil, fmt.Errorf("%w on %s (a socket that does not answer: its agent was killed)", ErrNoAgent, socket)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}, DisableCompression: true}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}, nil
}

// APIError is an error answer of the agent.
type APIError struct {
	Code        int
	Message     string
	Diagnostics string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	if c.Waiting != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if a := h.Get(WaitingHeader); a != "" {
				c.Waiting(a)
			}
			return nil
		}})
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent/"+APIVersion+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("talking to the agent on %s: %w", c.Socket, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var er ErrorResponse
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &er) != nil || er.Error == "" {
			er.Error = fmt.Sprintf("the agent answered %s", resp.Status)
		}
		return nil, &APIError{Code: resp.StatusCode, Message: er.Error, Diagnostics: er.Diagnostics}
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func addrPath(prefix, addr string) string { return prefix + url.PathEscape(addr) }

// Status returns what the agent supervises (GET /v1/status).
func (c *Client) Status(ctx context.Context) (*StatusResponse, error) {
	var out StatusResponse
	return &out, c.call(ctx, http.MethodGet, "/status", nil, &out)
}

// Events streams events (GET /v1/events) to fn, one JSON object each,
// until ctx is done, the agent stops, or fn returns an error. since is
// passed as is ("" for new events only).
func (c *Client) Events(ctx context.Context, since string, fn func(json.RawMessage) error) error {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	return c.EventsQuery(ctx, q, fn)
}

// EventsQuery is Events with the query of GET /v1/events: since, until,
// type, addr, topic (EventFilter.Values).
func (c *Client) EventsQuery(ctx context.Context, q url.Values, fn func(json.RawMessage) error) error {
	path := "/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if err := fn(append(json.RawMessage(nil), sc.Bytes()...)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}

// Snapshot returns the engine's books with what each instance uses (GET
// /v1/snapshot).
func (c *Client) Snapshot(ctx context.Context) (*SnapshotResponse, error) {
	var out SnapshotResponse
	return &out, c.call(ctx, http.MethodGet, "/snapshot", nil, &out)
}

// Usage returns what each running instance uses, by address (GET
// /v1/usage).
func (c *Client) Usage(ctx context.Context) (map[string]Usage, error) {
	var out map[string]Usage
	return out, c.call(ctx, http.MethodGet, "/usage", nil, &out)
}

// LastPlan returns the last plan with changes the engine applied (GET
// /v1/plan/last).
func (c *Client) LastPlan(ctx context.Context) (*LastPlanResponse, error) {
	var out LastPlanResponse
	return &out, c.call(ctx, http.MethodGet, "/plan/last", nil, &out)
}

// Metrics returns the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("talking to the agent on %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the agent answered %s", resp.Status)
	}
	return string(b), err
}

// Restart restarts a daemon (or runs a job again) and returns its new pid
// (POST /v1/restart); with cascade, what depends on it is restarted after
// it (?cascade=1).
func (c *Client) Restart(ctx context.Context, addr string, cascade bool) (*RestartResponse, error) {
	var out RestartResponse
	path := addrPath("/restart/", addr)
	if cascade {
		path += "?cascade=1"
	}
	return &out, c.call(ctx, http.MethodPost, path, nil, &out)
}

// Signal sends a signal to a daemon (POST /v1/signal).
func (c *Client) Signal(ctx context.Context, addr, sig string) error {
	return c.SignalMain(ctx, addr, sig, false)
}

// SignalMain is Signal to the daemon's main process alone when main.
func (c *Client) SignalMain(ctx context.Context, addr, sig string, main bool) error {
	return c.call(ctx, http.MethodPost, addrPath("/signal/", addr), SignalRequest{Signal: sig, Main: main}, nil)
}

// Pause stops a daemon with SIGSTOP until Resume (POST /v1/pause).
func (c *Client) Pause(ctx context.Context, addr string) (*PauseResponse, error) {
	var out PauseResponse
	return &out, c.call(ctx, http.MethodPost, addrPath("/pause/", addr), nil, &out)
}

// Resume continues a paused daemon (POST /v1/resume).
func (c *Client) Resume(ctx context.Context, addr string) (*PauseResponse, error) {
	var out PauseResponse
	return &out, c.call(ctx, http.MethodPost, addrPath("/resume/", addr), nil, &out)
}

// Stop stops a daemon and holds it stopped, whatever its restart policy,
// until Start (POST /v1/stop); it returns once the daemon stopped.
func (c *Client) Stop(ctx context.Context, addr string) (*HoldResponse, error) {
	var out HoldResponse
	return &out, c.call(ctx, http.MethodPost, addrPath("/stop/", addr), nil, &out)
}

// Start releases the hold of Stop and starts the daemon (POST /v1/start);
// it returns once the start is under way.
func (c *Client) Start(ctx context.Context, addr string) (*HoldResponse, error) {
	var out HoldResponse
	return &out, c.call(ctx, http.MethodPost, addrPath("/start/", addr), nil, &out)
}

// Plan asks the agent for a plan of the configuration on disk (POST
// /v1/plan).
func (c *Client) Plan(ctx context.Context, destroy bool) (*PlanResponse, error) {
	var out PlanResponse
	return &out, c.call(ctx, http.MethodPost, "/plan", PlanRequest{Destroy: destroy, Variables: c.Variables}, &out)
}

// Apply applies (or destroys) through the agent, handing each line of the
// stream to fn, and returns the final result (POST /v1/apply,
// /v1/destroy). fingerprint, when set, is that of the plan the user
// approved.
func (c *Client) Apply(ctx context.Context, destroy bool, fingerprint string, fn func(ApplyLine)) (*ApplyResult, error) {
	path := "/apply"
	if destroy {
		path = "/destroy"
	}
	resp, err := c.do(ctx, http.MethodPost, path, ApplyRequest{Fingerprint: fingerprint, Variables: c.Variables})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l ApplyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("reading the agent's answer: %w", err)
		}
		if l.Result != nil {
			return l.Result, nil
		}
		if fn != nil {
			fn(l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("the agent ended the apply without a result (did it stop?)")
}

// Logs copies the log of addr (GET /v1/logs): its last n lines, then with
// follow what is written, until ctx is done.
func (c *Client) Logs(ctx context.Context, addr string, n int, follow bool, w io.Writer) error {
	path := addrPath("/logs/", addr) + "?n=" + strconv.Itoa(n)
	if follow {
		path += "&follow=1"
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
