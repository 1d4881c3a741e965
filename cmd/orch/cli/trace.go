package cli

import (
	"io"
	"os"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/spf13/cobra"
)

func (a *App) traceCommand() *cobra.Command {
	var (
		vf      varFlags
		output  string
		filters []string
		ebpf    bool
		dur     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trace [-o FILE] [-e EXPR]... [-ebpf] [-for DURATION] NAME [DIR]",
		Short: "Trace the system calls of a running daemon (strace -f)",
		Long: `Attach strace -f to the whole process group of daemon NAME (for a
container, its init's group, by its pids on the host) and print the trace,
each line starting with [pid N], until Ctrl-C; then strace detaches and the
daemon runs on, unharmed. The tracer runs in the agent (orch up or orch
agent), which must run for DIR: it works while orch up runs, from another
terminal. strace must be installed where the agent runs (Debian: apt-get
install strace); without it, the error says so.

-e passes an expression to strace as is (-e trace=openat,connect;
repeatable). -o writes the trace to FILE instead of standard output.
-for ends the trace after DURATION instead of at Ctrl-C.
-ebpf counts the system calls of the daemon's processes by name with
bpftrace instead (one line per call: "openat: 12"), for -for (default
10s), then prints the counts (bpftrace attaches and detaches its 360-odd
probes one by one: a trace lasts at least that, about 17 s each way on a
2-core VM). bpftrace must be installed where the agent
runs and able to attach (root, a kernel with tracepoints); otherwise orch
trace exits 1 with bpftrace's own error.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, _, c, err := a.nameOnAgent(args, &vf, "orch trace attaches through orch up or orch agent")
			if err != nil {
				return err
			}
			var out io.Writer = a.Stdout
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				defer f.Close()
				out = f
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			if ebpf && dur == 0 {
				dur = 10 * time.Second
			}
			if err := c.Trace(ctx, addr.String(), agent.TraceRequest{Filters: filters, EBPF: ebpf, For: dur}, out); err != nil {
				return a.agentErr(err)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the trace to `FILE`")
	cmd.Flags().StringArrayVarP(&filters, "expr", "e", nil, "an strace -e `EXPR` (trace=openat; repeatable)")
	cmd.Flags().BoolVar(&ebpf, "ebpf", false, "count system calls with bpftrace instead, for -for (default 10s)")
	cmd.Flags().DurationVar(&dur, "for", 0, "end the trace after `DURATION` (0: at Ctrl-C)")
	return cmd
}
