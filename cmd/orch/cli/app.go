package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// App is one invocation of orch: where it reads and writes, and what it has
// loaded so far. The zero value is not usable; set every field. An App runs
// one command; it is not safe for concurrent use.
type App struct {
	// Version is what `orch version` prints ("dev" unless set by -ldflags).
	Version string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer

	// settings is loaded before any command other than version and help
	// runs (see Settings); commands read it, never the flags or the
	// environment themselves.
	settings *Settings
	noColor  bool
	// plugins are the provider plugins launched so far (plugins.go);
	// Run kills them before it returns.
	plugins *plugins
	// wait is orch apply's -wait and -wait-timeout (nil: no waiting, as
	// for destroy).
	wait *waitFlags
}

// Exit codes. Besides these, plan -detailed-exitcode exits ExitChanges (2)
// when there are changes, and a second Ctrl-C exits 130 at once.
const (
	ExitOK    = 0 // the command did what it was asked; validate: the configuration is valid
	ExitError = 1 // anything else: invalid configuration, fmt -check found work, bad usage, I/O failure
)

// exitError ends a command with a code after the command has already told
// the user why (diagnostics, a diff); msg, when set, is printed as an error.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// silentFailure ends a command with ExitError, printing nothing more.
func silentFailure() error { return &exitError{code: ExitError} }

// Run parses args (without the program name), runs the command and returns
// the process exit code. Single-dash long flags are accepted (see
// NormaliseArgs).
func (a *App) Run(args []string) int {
	defer func() { a.plugins.close() }()
	root := a.rootCommand()
	root.SetArgs(NormaliseArgs(root, args))
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(a.Stderr, "Error: %s\n", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintf(a.Stderr, "Error: %s\n", err)
	if cmd != nil && isUsageError(err) {
		fmt.Fprintf(a.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ExitError
}

// usageError marks errors about how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func isUsageError(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	// cobra's own argument and flag errors are plain errors; everything
	// else this package returns is an exitError or a usageError.
	var ee *exitError
	return !errors.As(err, &ee)
}

func (a *App) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "orch",
		Short: "A declarative orchestrator for the daemons, jobs and modules of one host",
		Long: `orch reads a directory of HCL files that declares daemons, jobs, modules and
the runtime backends they run on, and keeps the host in that state.

Every long flag may be written with one dash or two (-json or --json), and
a flag's value may follow it as the next argument or after '='.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == "help" {
				return nil // help must work whatever the settings say
			}
			s, err := LoadSettings(cmd.Flags())
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			a.settings = s
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	addSettingsFlags(root.PersistentFlags())
	root.PersistentFlags().BoolVar(&a.noColor, "no-color", false, "never print colours (as does NO_COLOR)")
	root.AddCommand(
		a.validateCommand(),
		a.fmtCommand(),
		a.graphCommand(),
		a.planCommand(),
		a.applyCommand(),
		a.upCommand(),
		a.agentCommand(),
		a.eventsCommand(),
		a.logsCommand(),
		a.restartCommand(),
		a.signalCommand(),
		a.destroyCommand(),
		a.statusCommand(),
		a.stateCommand(),
		a.settingsCommand(),
		a.versionCommand(),
	)
	return root
}

func (a *App) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print orch's version",
		Long: `Print the version of this orch binary on standard output. It is "dev" for
a build without release information; releases set it with
-ldflags "-X main.version=...". It reads no settings and no configuration.`,
		Args: cobra.NoArgs,
		// version must work whatever the settings say.
		PersistentPreRun: func(*cobra.Command, []string) {},
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(a.Stdout, "orch %s\n", a.Version)
			return err
		},
	}
}
