package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// JSONSetting is one key of `orch settings -json`.
type JSONSetting struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source string `json:"source"` // flag, env ORCH_X, file PATH, default
}

func (a *App) settingsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show orch's own settings and where each comes from",
		Long: `Show orch's own settings (how orch runs, not what it runs: that is declared
in HCL) with the value in effect and where it came from. Each key is taken
from the first of: a flag (--state-dir, --log-level, --parallelism,
--agent-socket), the environment (ORCH_STATE_DIR, ORCH_LOG_LEVEL,
ORCH_PARALLELISM, ORCH_AGENT_SOCKET), the settings file (--settings FILE,
else $XDG_CONFIG_HOME/orch/settings.toml or ~/.config/orch/settings.toml),
its default. An unknown key in the file or an invalid value is an error that
names where it was written, for this and every other command. With -json,
the same as a JSON object on standard output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := a.settings
			if asJSON {
				out := struct {
					File     string        `json:"file"`
					Settings []JSONSetting `json:"settings"`
				}{File: s.File, Settings: []JSONSetting{}}
				for _, k := range SettingsKeys() {
					out.Settings = append(out.Settings, JSONSetting{Key: k, Value: s.Value(k), Source: s.Source(k)})
				}
				if err := writeJSON(a.Stdout, out); err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
			for _, k := range SettingsKeys() {
				v := s.Value(k)
				if str, ok := v.(string); ok && str == "" {
					v = `""`
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\n", k, v, s.Source(k))
			}
			if err := tw.Flush(); err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the settings as a JSON object")
	return cmd
}
