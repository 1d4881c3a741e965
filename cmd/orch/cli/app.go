package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/orch-dev/orch/spec"
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
	// jsonApply: apply or destroy -json; plans, steps, diagnostics and
	// the summary are JSON lines on stdout (applyjson.go).
	jsonApply bool
	// partial is -target and -replace of plan, apply and destroy.
	partial partialFlags
	// plugins are the provider plugins launched so far (plugins.go);
	// Run kills them before it returns.
	plugins *plugins
	// wait is orch apply's -wait and -wait-timeout (nil: no waiting, as
	// for destroy).
	wait *waitFlags
	// checkPrograms: orch validate and orch plan report a command whose
	// program is not found (spec.Options.CheckPrograms).
	checkPrograms bool
	// makesState: the command makes the state directory anyway (orch
	// plan, apply, up, agent), so the load makes it, and writes
	// the configuration cache there from the first load
	// (spec.Options.MakeStateDir).
	makesState bool
	// redactor removes the sensitive values of the configurations loaded
	// so far from everything written on Stdout and Stderr (redact.go);
	// orch up loads again on its watcher's goroutine.
	redactor atomic.Pointer[spec.Redactor]
	// loaded is what agentFor loaded when no agent answered, taken by the
	// next loadConfig of the same directory and flags (open's): a plan
	// loads its configuration once, not twice (loading is most of a
	// large plan's CPU).
	loaded *pendingLoad
	// fetch is the state being read while the configuration loads
	// (prefetch.go), until a session takes it or it is dropped.
	fetch *stateFetch
}

type pendingLoad struct {
	dir           string
	vf            *varFlags
	checkPrograms bool
	res           loadResult
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
	defer a.dropFetch()
	a.Stdout, a.Stderr = a.redacting(a.Stdout), a.redacting(a.Stderr)
	root := a.rootCommand()
	args, err := a.chdir(root, args)
	if err != nil {
		fmt.Fprintf(a.Stderr, "Error: %s\n", err)
		return ExitError
	}
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
		fmt.Fprintf(a.Stderr, "Run '%s -help' for usage.\n", cmd.CommandPath())
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
a flag's value may follow it as the next argument or after '='. orch
-chdir=DIR COMMAND runs COMMAND in DIR. docs/cli.md is the reference; make
docs writes these helps as man pages.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       a.Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == "help" || cmd.Name() == cobra.ShellCompRequestCmd || cmd.Name() == cobra.ShellCompNoDescRequestCmd ||
				cmd.HasParent() && cmd.Parent().Name() == "completion" {
				return nil // help and completion must work whatever the settings say
			}
			s, err := LoadSettings(cmd.Flags())
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			a.settings = s
			return nil
		},
	}
	root.SetVersionTemplate("orch {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{suggestFlag(cmd, err)} })
	// -chdir is taken out of the arguments by Run (chdir) before cobra
	// parses them; it is declared here for -help and the documentation.
	root.Flags().String("chdir", "", "switch to `DIR` before doing anything else (only before the subcommand: orch -chdir=DIR plan)")
	root.Flags().Bool("version", false, "print orch's version (as orch version does)")
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
		a.topCommand(),
		a.traceCommand(),
		a.logsCommand(),
		a.restartCommand(),
		a.signalCommand(),
		a.pauseCommand(),
		a.resumeCommand(),
		a.stopCommand(),
		a.startCommand(),
		a.destroyCommand(),
		a.statusCommand(),
		a.stateCommand(),
		a.settingsCommand(),
		a.versionCommand(),
	)
	return root
}

// JSONVersion is the output of `orch version -json`.
type JSONVersion struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func (a *App) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print orch's version",
		Long: `Print the version of this orch binary on standard output. It is "dev" for
a build without release information; releases set it with
-ldflags "-X main.version=...". It reads no settings and no configuration.
orch --version prints the same line. -json prints {version, go, platform}.`,
		Args: cobra.NoArgs,
		// version must work whatever the settings say.
		PersistentPreRun: func(*cobra.Command, []string) {},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return writeJSON(a.Stdout, JSONVersion{Version: a.Version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH})
			}
			_, err := fmt.Fprintf(a.Stdout, "orch %s\n", a.Version)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {version, go, platform} as JSON")
	return cmd
}

// chdir takes -chdir=DIR (or -chdir DIR, one dash or two) out of the
// arguments before the subcommand and switches to DIR, as Terraform does:
// everything after, the settings file and -var-file paths included, is
// relative to DIR.
func (a *App) chdir(root *cobra.Command, args []string) ([]string, error) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" || !strings.HasPrefix(arg, "-") || arg == "-" {
			return args, nil // the subcommand: -chdir after it is an unknown flag
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if name != "chdir" {
			if f := lookupFlag(root, name); f != nil && !hasVal && f.NoOptDefVal == "" {
				i++ // the value of a flag before the subcommand
			}
			continue
		}
		n := 1
		if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("-chdir needs a directory: orch -chdir=DIR COMMAND")
			}
			val, n = args[i+1], 2
		}
		if err := os.Chdir(val); err != nil {
			return nil, fmt.Errorf("-chdir=%s: %w", val, unwrapPathError(err))
		}
		return append(append([]string{}, args[:i]...), args[i+n:]...), nil
	}
	return args, nil
}

// Command returns orch's root command with every subcommand, completion
// and help included, as the binary runs it: for generating documentation
// (gendocs) and for checking docs/cli.md against it. Run is what executes
// a command line.
func (a *App) Command() *cobra.Command {
	root := a.rootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}
