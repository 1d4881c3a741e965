package cli

import (
	"fmt"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

// JSONPause is one line of orch pause -json and orch resume -json.
type JSONPause struct {
	Address string `json:"address"`
	Paused  bool   `json:"paused"`
}

func (a *App) pauseCommand() *cobra.Command  { return a.pauseResumeCommand(true) }
func (a *App) resumeCommand() *cobra.Command { return a.pauseResumeCommand(false) }

func (a *App) pauseResumeCommand(pause bool) *cobra.Command {
	var (
		vf     varFlags
		asJSON bool
	)
	verb, short, long := "pause", "Stop a daemon where it is (freezer or SIGSTOP), until orch resume",
		`Stop daemon NAME where it is: its cgroup frozen (a native daemon in a
cgroup of its own: setsid children included, no process sees a signal),
else SIGSTOP to its whole process group; a container is paused by its
Engine. Its health checks are suspended meanwhile, so a paused daemon is
never taken for a dead one and restarted; orch status shows it paused. A
NAME without a key pauses every instance of a block with count or for_each.
It needs the agent (orch up or orch agent) that supervises the daemon: the
pause is a state of that supervision. -json prints an array of
{address, paused}.`
	if !pause {
		verb, short, long = "resume", "Continue a paused daemon (thaw or SIGCONT)",
			`Continue daemon NAME, paused by orch pause: its cgroup thawed, or
SIGCONT to its whole process group, and its health checks again, as those of a daemon that was ready.
A NAME without a key resumes every instance. Needs the agent, as orch
pause does. -json prints an array of {address, paused}.`
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME [DIR]",
		Short: short,
		Long:  long,
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, l, c, err := a.nameOnAgent(args, &vf, "orch "+verb+" acts on what orch up or orch agent supervises")
			if err != nil {
				return err
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			targets, err := a.instancesOf(ctx, l, c, addr)
			if err != nil {
				return err
			}
			out := []JSONPause{}
			for _, ad := range targets {
				var resp *agent.PauseResponse
				if pause {
					resp, err = c.Pause(ctx, ad.String())
				} else {
					resp, err = c.Resume(ctx, ad.String())
				}
				if err != nil {
					return a.agentErr(err)
				}
				out = append(out, JSONPause{Address: resp.Address, Paused: resp.Paused})
				if !asJSON {
					fmt.Fprintf(a.Stdout, "%s %sd\n", ad, verb)
				}
			}
			if asJSON {
				return writeJSON(a.Stdout, out)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {address, paused}")
	return cmd
}

// nameOnAgent reads the NAME [DIR] arguments of a command that only works
// through a running agent: the address named, where its state is, and the
// agent's client; without an agent, an error ending with why.
func (a *App) nameOnAgent(args []string, vf *varFlags, why string) (spec.Address, *located, *agent.Client, error) {
	names, dir := splitDir(args, 1)
	addr, err := parseName(names[0])
	if err != nil {
		return spec.Address{}, nil, nil, err
	}
	l, err := a.locate(dir, vf)
	if err != nil {
		return spec.Address{}, nil, nil, err
	}
	c := a.agentOf(l)
	if c == nil {
		return spec.Address{}, nil, nil, &exitError{code: ExitError, msg: fmt.Sprintf("no agent runs for %s: %s", l.where(), why)}
	}
	return addr, l, c, nil
}
