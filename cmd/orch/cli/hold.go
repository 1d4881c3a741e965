package cli

import (
	"fmt"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

// JSONHold is one element of the array orch stop -json and orch start
// -json print.
type JSONHold struct {
	Address string `json:"address"`
	// Held: stopped by the user, kept stopped until orch start.
	Held bool `json:"held"`
}

func (a *App) stopCommand() *cobra.Command  { return a.holdCommand(true) }
func (a *App) startCommand() *cobra.Command { return a.holdCommand(false) }

func (a *App) holdCommand(stop bool) *cobra.Command {
	var (
		vf     varFlags
		asJSON bool
	)
	verb, done, short, long := "stop", "stopped", "Stop daemons and keep them stopped, until orch start",
		`Stop each daemon (or module) NAME with the stop signal and timeout it was
applied with, and keep it stopped: no restart policy starts it again, an
edit of its configuration does not start it (the edit applies when it is
started), and what depends on it waits, shown blocked by it in orch status
and orch events; what depends on it and runs goes on running. A NAME
without a key stops every instance of a block with count or for_each
(worker: worker[0], worker[1], ...). It returns once each has stopped.
The hold is a state of the supervision of the agent (orch up or orch
agent) that runs for the current directory (orch -chdir=DIR stop NAME for
another): when that agent ends, the hold ends with it, and a later orch up
starts the daemon again. -json prints an array of {address, held}.`
	if !stop {
		verb, done, short, long = "start", "started", "Start daemons that orch stop held",
			`Release the hold of orch stop on each daemon (or module) NAME and start it,
with its configuration as declared now; what it blocked starts once it is
ready. On a daemon that is not held it starts it when it is not running (as
orch restart does) and does nothing when it runs. A NAME without a key
starts every instance. It returns once each start is under way: orch
events tells when it started. Needs the agent, as orch stop does. -json
prints an array of {address, held}.`
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME...",
		Short: short,
		Long:  long,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names := make([]spec.Address, 0, len(args))
			for _, n := range args {
				addr, err := parseName(n)
				if err != nil {
					return err
				}
				names = append(names, addr)
			}
			l, err := a.locate(".", &vf)
			if err != nil {
				return err
			}
			c := a.agentOf(l)
			if c == nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent runs for %s: orch %s acts on what orch up or orch agent supervises", l.where(), verb)}
			}
			ctx, cancel := a.quietInterruptible()
			defer cancel()
			out := []JSONHold{}
			for _, name := range names {
				targets, err := a.instancesOf(ctx, l, c, name)
				if err != nil {
					return err
				}
				for _, ad := range targets {
					var resp *agent.HoldResponse
					if stop {
						resp, err = c.Stop(ctx, ad.String())
					} else {
						resp, err = c.Start(ctx, ad.String())
					}
					if err != nil {
						return a.agentErr(err)
					}
					out = append(out, JSONHold{Address: resp.Address, Held: resp.Held})
					if !asJSON {
						fmt.Fprintf(a.Stdout, "%s %s\n", ad, done)
					}
				}
			}
			if asJSON {
				return writeJSON(a.Stdout, out)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {address, held}")
	return cmd
}
