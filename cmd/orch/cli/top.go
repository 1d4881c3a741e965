package cli

import (
	"fmt"

	"github.com/orch-dev/orch/cmd/orch/cli/top"
	"github.com/spf13/cobra"
)

func (a *App) topCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "top [DIR]",
		Short: "A live view of what the agent (or orch up) supervises",
		Long: `Show every instance the agent or orch up running for DIR supervises, live,
in the terminal: address, kind, runtime, state (running, starting, ready,
unhealthy, paused, restarting, exited, failed, waiting, blocked, held; a module's
own: loaded, running, stopping, ...), health, restarts, pid or container
id, uptime, CPU (share of one core) and memory of its process group.

It follows the agent's event stream: a crash, a restart or a health change
shows at once; CPU and memory are sampled every 3 s.

Keys: up/down (j/k), PgUp/PgDn, Home/End move; Enter follows the selected
instance's log (q or Esc: back); r restarts it; x stops it and holds it
stopped, whatever its restart policy (as orch stop), and t starts it again
(as orch start); p pauses and u resumes it; ! asks for a signal to send (HUP, USR1, ...); s changes the sort
(address, state, cpu, memory, restarts); / filters by name, state, kind or
runtime (Esc clears); q or Ctrl-C quits. It needs a running agent, found
through the state directory, and a terminal.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			c := a.agentOf(l)
			if c == nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent or orch up is running for %s (nothing answers at %s): orch top shows what one supervises",
					l.where(), a.settings.AgentSocketFor(l.stateDir))}
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			if err := top.Run(ctx, c, a.Stdin, a.Stdout); err != nil {
				return &exitError{code: ExitError, msg: "orch top: " + err.Error()}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	return cmd
}
