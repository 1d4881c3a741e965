package process

import "0orch/execwrap"

// ExecArg is the hidden first argument that makes orch run ExecMain.
const ExecArg = execwrap.Arg

// LogdArg is the hidden first argument that makes orch run LogdMain.
const LogdArg = "__logd"

// HelperEnv is set in the environment of the helpers the provider starts
// (ORCH_PROCESS_HELPER=exec or logd). The exec wrapper removes it before it
// executes the daemon. The provider refuses to start helpers when it finds
// the variable in its own environment: that means <self> did not dispatch
// the helper argument and is running its normal code (a test binary without
// the TestMain hook, say), which must not recurse.
const HelperEnv = execwrap.HelperEnv

// HelperMain runs the helper named by args[0] (ExecArg or LogdArg) with the
// rest of args and returns its exit code and true; it returns false when
// args[0] names no helper. cmd/orch calls it first thing:
//
//	if code, ok := process.HelperMain(os.Args[1:]); ok {
//		os.Exit(code)
//	}
func HelperMain(args []string) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case ExecArg:
		return ExecMain(args[1:]), true
	case LogdArg:
		return LogdMain(args[1:]), true
	}
	return 0, false
}

// rlimitResources maps the names spec.RlimitNames accepts to resources.
var rlimitResources = execwrap.Resources

// execSpec is what the exec wrapper does before it executes the daemon
// (execwrap.Spec).
type execSpec = execwrap.Spec

// ExecMain is the exec wrapper, run as `orch __exec ARGS` (args excludes
// ExecArg): execwrap.Main. A binary that links this package runs it from
// execwrap's init, before the rest of its packages are initialised; this
// is for a caller that dispatches HelperMain itself.
func ExecMain(args []string) int { return execwrap.Main(args) }
