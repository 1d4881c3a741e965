package cli

import (
	"io"
	"os"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/spf13/cobra"
)

func (a *App) traceCommand() *cobra.Command {
	var (
		vf      varFlags
		output  string
		filters []string
		ebpf    bool
	)
	cmd := &cobra.Command{
		Use:   "trace [-o FILE] [-e EXPR]... [-ebpf] NAME [DIR]",
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
-ebpf counts the system calls by name with bpftrace instead, printed at
Ctrl-C (bpftrace must be installed; without it, the error says so).`,
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
			if err := c.Trace(ctx, addr.String(), agent.TraceRequest{Filters: filters, EBPF: ebpf}, out); err != nil {
				return a.agentErr(err)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the trace to `FILE`")
	cmd.Flags().StringArrayVarP(&filters, "expr", "e", nil, "an strace -e `EXPR` (trace=openat; repeatable)")
	cmd.Flags().BoolVar(&ebpf, "ebpf", false, "count system calls with bpftrace instead")
	return cmd
}
