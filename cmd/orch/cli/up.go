package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/agent/web"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

func (a *App) upCommand() *cobra.Command {
	var (
		vf          varFlags
		lf          lockFlags
		asJSON      bool
		noLogPrefix bool
		quiet       bool
	)
	cmd := &cobra.Command{
		Use:   "up [DIR]",
		Short: "Bring everything up, keep it up, and apply every edit (foreground)",
		Long: `Apply the configuration in DIR without asking, then stay in the foreground:
supervise every daemon (restart policies with backoff, health checks,
crash-loop detection), start dependents once what they depend on is
healthy (or running, without a health check; or completed, for a job), and
apply every valid edit of DIR (only the difference: untouched daemons keep
running). An invalid edit is reported and changes nothing.

Ctrl-C (SIGINT) or SIGTERM stops every daemon, dependents first, each
within its stop timeout, and exits 0; a second Ctrl-C (more than 2 s
later) kills what still runs (SIGKILL, dependents first) instead of waiting. The
state keeps the stopped daemons (status "stopped"): the next orch up starts
them again. orch up holds the state lock while it runs; orch status works
meanwhile.

orch up serves the agent API on the agent socket (agent_socket, default
<state dir>/agent.sock), as orch agent does: orch status, events, logs,
restart, signal, plan, apply and destroy talk to it (docs/agent-api.md).

Each line says what happened: "12:00:01 daemon.api started pid=123". With
-json, each event is one JSON object per line: {time, type, address, pid,
exit_code, signal, detail}.

Between those lines, as Docker Compose does, orch up prints what each
daemon, job and module writes (stdout and stderr, from its log file), one
line at a time, prefixed with its name ("api[1] | listening on :8081"),
names aligned and each in a colour of its own on a terminal (none under
NO_COLOR, -no-color or when the output is not a terminal). --no-log-prefix
prints the lines bare; --quiet prints orch's lines only, and with the exit
of a daemon or job that failed, its last lines. Output written before orch
up began is not repeated (orch logs shows it); -json prints events only.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.makesState = true
			return a.up(dirArg(args), &vf, &lf, asJSON, upOutput{prefix: !noLogPrefix, quiet: quiet})
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines (and no daemon output)")
	cmd.Flags().BoolVar(&noLogPrefix, "no-log-prefix", false, "print the daemons' lines without their names")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print orch's lines only (and the last lines of a failed exit)")
	return cmd
}

// upOutput is how orch up prints the daemons' own output.
type upOutput struct {
	forward bool // print it at all (orch up without -json)
	prefix  bool
	quiet   bool
}

func (a *App) up(dir string, vf *varFlags, lf *lockFlags, asJSON bool, uo upOutput) error {
	uo.forward = !asJSON
	return a.runEngine(dir, vf, lf, asJSON, a.Stdout, "up", uo)
}

// runEngine is orch up and orch agent: it takes the lock, runs the engine
// and serves its API on the agent socket until SIGINT or SIGTERM, printing
// events to out.
func (a *App) runEngine(dir string, vf *varFlags, lf *lockFlags, asJSON bool, w io.Writer, op string, uo upOutput) error {
	s, err := a.open(dir, vf, lf, op)
	if err != nil {
		return err
	}
	defer s.close()
	a.pluginSet().freeze() // the engine holds these providers until it exits
	// A closed output (orch up | head, once head is done) is an interrupt:
	// everything is stopped in order, as on Ctrl-C, instead of orch dying
	// of SIGPIPE with its daemons left running. Notify, not Ignore: an
	// ignored signal would be ignored by every daemon orch starts too.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	pw := &pipeWatch{w: w, gone: make(chan struct{})}
	w = pw
	out := func(ev engine.Event) { fmt.Fprintln(w, ev.String()) }
	if asJSON {
		// What enc.Encode wrote, without its reflection (AppendJSON).
		out = func(ev engine.Event) { w.Write(append(ev.AppendJSON(make([]byte, 0, 256)), '\n')) }
	}
	later := closeLater(s.provs, s.stateDir)
	if uo.forward {
		fw := newLogForwarder(w, s.cfg, s.stateDir, a.colour(w), uo.prefix, uo.quiet)
		fw.closeLater = later
		fw.streamed, fw.openStream = a.containerLogs(s)
		fw.errOut = a.Stderr
		fw.start()
		defer fw.stop()
		out = fw.event
	}
	out = releaseAfterReady(systemdNotify(out))
	load := func() engine.LoadResult {
		r := a.loadConfig(dir, vf)
		return engine.LoadResult{Config: r.cfg, Diags: r.diags, Files: r.files}
	}
	mods, closeMods, err := hostModules(s)
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	defer closeMods()
	ctx, hurry, stop := a.interruptibleHurryOr("\nStopping everything, dependents first. Press Ctrl-C again to kill what still runs.",
		"\nKilling what still runs (SIGKILL), dependents first.",
		pw.gone, "\nThe output of orch "+op+" was closed (a broken pipe): stopping everything, dependents first.")
	defer stop()
	eng := engine.New(engine.Options{
		Dir: s.cfg.Dir, Config: s.cfg, Files: s.res.files, Load: load, WatchFiles: vf.varFiles,
		Providers: s.provs, Store: s.store, StateDir: s.stateDir, Project: s.cfg.Project.Name,
		Parallelism: a.settings.Parallelism, Out: out, Bus: mods.Bus(), Hurry: hurry,
		CloseLater: later,
	})
	// Modules' own states and what they publish reach the event stream
	// (orch events, the web page).
	defer eng.ForwardBus(mods.Bus())()
	sock := a.settings.AgentSocketFor(s.stateDir)
	ln, err := agent.Listen(sock)
	if err != nil {
		return &exitError{code: ExitError, msg: "cannot serve the agent API: " + err.Error()}
	}
	srvCtx, srvStop := context.WithCancel(context.Background())
	served := make(chan struct{})
	srv := &agent.Server{Engine: eng, Dir: s.cfg.Dir, Load: load, LogPath: func(addr spec.Address) string {
		return process.LogPath(s.stateDir, addr)
	}, ModuleCalls: mods.CallStats}
	go func() {
		defer close(served)
		srv.Serve(srvCtx, ln)
	}()
	defer func() { srvStop(); <-served }()
	if h := s.cfg.Project.HTTP; h != nil {
		// The web page and /metrics, as declared when orch up started (an
		// edit of orch { http } takes effect at the next start).
		wl, err := net.Listen("tcp", h.Listen)
		if err != nil {
			return &exitError{code: ExitError, msg: fmt.Sprintf("cannot serve orch { http } (%s:%d) on %s: %v",
				h.DeclRange.Filename, h.DeclRange.Start.Line, h.Listen, err)}
		}
		ws := &web.Server{API: srv, Token: h.Token, Listen: wl.Addr().String()}
		webDone := make(chan struct{})
		go func() {
			defer close(webDone)
			ws.Serve(srvCtx, wl)
		}()
		defer func() { srvStop(); <-webDone }()
		fmt.Fprintf(a.Stderr, "Serving the web page and /metrics on http://%s/\n", wl.Addr())
	}
	if err := eng.Run(ctx); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	return nil
}

// pipeWatch is orch up's output: gone is closed at the first write that
// finds the reader gone (EPIPE).
type pipeWatch struct {
	w    io.Writer
	once sync.Once
	gone chan struct{}
}

func (p *pipeWatch) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.once.Do(func() { close(p.gone) })
	}
	return n, err
}

// closeLater is engine.Options.CloseLater through the process runtime's
// log daemon (process.Provider.CloseLater); nil without a process runtime.
func closeLater(provs executor.Providers, stateDir string) func(fd int) error {
	cl, ok := provs[process.Kind].(interface {
		CloseLater(stateDir string, fd int) error
	})
	if !ok {
		return nil
	}
	return func(fd int) error { return cl.CloseLater(stateDir, fd) }
}
