// Package wasm hosts orch modules compiled to WebAssembly, in process, in a
// github.com/tetratelabs/wazero sandbox. Each module instance has its own
// linear memory under its own cap; a trap, or a call over its time budget
// (which closes the instance), concerns that instance only. Modules with
// the same cap share a wazero Runtime and compiled code.
//
// A Host compiles (through a CompilationCache on disk, so a restart does
// not compile again) and loads modules; a Module runs the guest's hooks
// through the guest ABI written down in docs/modules.md:
//
//	          Load               Run: _initialize, orch_init(config),
//	(file) ---------> loaded ------------------------------------> starting
//	                    |                                             |
//	                    | Close                           orch_start  |
//	                    v                                   ok        v
//	                 stopped <---- stopping <--- ctx done ------- running
//	                                  |    orch_stop               |  ^ orch_on_event
//	                                  |                            |  | (one at a time)
//	                                  +--> failed <----------------+--+
//	                         a trap, an exit, a non-zero result, a call
//	                         over Limits.CallTimeout, memory over the cap
//
// Every transition is reported to Options.OnState, and published on the
// Bus as an "orch.module.<state>" event. A failed module is closed: its
// memory is released (zeroed, it may back a later instance: see
// linearMemory) and nothing of it keeps running; restarting it is its
// supervisor's decision (the engine applies the restart policy).
//
// The sandbox grants nothing by default: no files, no environment, no
// arguments, no network, and wazero's fake clocks (time only through the
// host function now). Spec grants mount directories (read-only unless
// writable) and pass named environment variables. Every path a guest
// names in a mounted directory is resolved beneath it, never through a
// symbolic link out of it (grantFS: openat2 RESOLVE_BENEATH, or os.Root).
//
// Calls into one guest are serialized by its Module: the guest is never
// entered by two goroutines. Host functions run on the calling goroutine.
//
// This package must never import the executor or the planner: the engine
// gives it a Bus, a KV namespace per module and a log sink.
package wasm
