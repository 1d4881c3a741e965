package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/spf13/cobra"
)

func (a *App) eventsCommand() *cobra.Command {
	var (
		vf                   varFlags
		asJSON               bool
		since, until         string
		types, addrs, topics []string
	)
	cmd := &cobra.Command{
		Use:   "events [DIR]",
		Short: "Stream what the agent (or orch up) does and sees",
		Long: `Stream the events of the agent or orch up that runs for DIR, one per line,
until Ctrl-C: started, exited (code or signal), healthy, unhealthy,
restarting in Xs, failed, config reloaded, plan applied, adopted, each
state of a module (module_state: loaded, starting, running, stopping,
stopped, failed), what modules publish on the bus (published, with its
topic), ...

-json prints each as one JSON object per line: {time, type, address,
pid, exit_code, signal, detail, topic} (docs/agent-api.md lists the
types). -since also prints the recent events kept by the agent (the last
4,096) from a time (RFC 3339), a duration back from now (5m), or all;
-until stops at a time (or a duration back from now), after printing the
kept events up to it.

Filters, each repeatable or comma-separated; an event must pass every
kind given, matching any one of its values: -type (started,exited),
-addr (an address, or a daemon's name alone; a NAME without a key, such
as worker, is every instance of that block, those started later
included), -topic (a bus topic, or a pattern ending in *: orders.*; it
matches published events, and orch.module.<state> for module_state).

It needs a running agent, found through the state directory: it works
while the configuration on disk is invalid.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			q := url.Values{}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			for _, t := range splitList(types) {
				q.Add("type", t)
			}
			for _, n := range splitList(addrs) {
				addr, err := parseName(n)
				if err != nil {
					return err
				}
				q.Add("addr", addr.String())
			}
			for _, t := range splitList(topics) {
				q.Add("topic", t)
			}
			// The agent checks the filters too; checking them here first
			// answers a typo without asking it.
			if _, err := agent.ParseEventFilter(q); err != nil {
				return usageError{err}
			}
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			c := a.agentOf(l)
			if c == nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent or orch up is running for %s (nothing answers at %s): start one with orch agent %s (or orch up %s)",
					l.where(), a.settings.AgentSocketFor(l.stateDir), dir, dir)}
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			err = c.EventsQuery(ctx, q, func(raw json.RawMessage) error {
				var err error
				if asJSON {
					_, err = fmt.Fprintf(a.Stdout, "%s\n", raw)
				} else {
					_, err = fmt.Fprintln(a.Stdout, renderEvent(raw))
				}
				return err
			})
			if err != nil && ctx.Err() == nil {
				return a.agentErr(err)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")
	cmd.Flags().StringVar(&since, "since", "", "also print the kept events since `WHEN` (RFC 3339 time, duration such as 5m, or all)")
	cmd.Flags().StringVar(&until, "until", "", "stop at `WHEN` (RFC 3339 time, or a duration back from now such as 5m)")
	cmd.Flags().StringArrayVar(&types, "type", nil, "only events of these `TYPES` (started,exited; repeatable)")
	cmd.Flags().StringArrayVar(&addrs, "addr", nil, "only events of these `NAMES` (worker: all its instances; repeatable)")
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "only published events whose topic matches `PATTERNS` (orders.*; repeatable)")
	return cmd
}

// splitList reads repeated, comma-separated flag values.
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
