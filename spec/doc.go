// Package spec turns a directory of orch configuration (HCL native syntax in
// *.hcl files, HCL JSON syntax in *.hcl.json files) into typed, validated,
// fully evaluated configuration: variables resolved, locals computed,
// count/for_each expanded into instances, references and depends_on turned
// into a dependency graph.
//
// spec is the only package that knows the language. It must never start a
// process, talk to a runtime backend or import another orch package:
// runtime-specific attributes are described by schemas handed in through
// Options, so backends can grow without spec knowing them. The one file it
// writes is the evaluated-configuration cache in the state directory, with
// Options.Cache (cache.go): a load with it gives what a load without it
// gives, faster when blocks did not change.
//
// Every problem a user can cause is returned as an hcl.Diagnostic carrying
// the file, line and column where the user wrote it; plain errors are not
// used for user input, and no input may panic (see FuzzLoad).
package spec
