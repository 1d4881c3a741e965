// Package cli is orch's command-line interface: the cobra commands, the
// normalisation of Terraform-style single-dash flags, the rendering of
// diagnostics as text or JSON, and orch's own settings (koanf: flags, ORCH_*
// environment, a settings file, defaults).
//
// cli is the only package that wires concrete pieces together: it hands the
// runtime schemas of the built-in backends to spec (see Schemas) and, later,
// providers to the planner and executor. It must never hold the language
// (that is spec) nor keep global state: every command works on an App, so
// tests can run several side by side.
package cli
