// Package docker is the runtimes "docker" and "podman": it runs daemons and
// jobs as containers of a Docker Engine, through the Engine API and its
// official Go client (github.com/moby/moby/client). A runtime's host
// attribute names the Engine; a Provider made with Options{Kind:
// KindPodman} serves "podman", the same code pointed at Podman's
// Docker-compatible API (see docs/language.md for what was tested).
//
// # One instance
//
//	           Start: create (pull the image if missing) + start
//	(absent) -------------------------------------------------> running
//	   ^                                                       |   |
//	   |           Delete: remove           Stop: stop signal, |   | exits, killed,
//	   +------------------------- exited <--- timeout, SIGKILL-+   | OOM (docker kill)
//	   |                             ^                             |
//	   |                             +-----------------------------+
//	   +--- docker rm -f behind orch's back: Observe says missing
//
// Each container is named ContainerName(project, address), for example
// orch-shop-daemon.api, and carries the labels
//
//	org.orch.managed-by  = orch
//	org.orch.project     = <project>
//	org.orch.address     = daemon.api[1]
//	org.orch.config-hash = <hash of the instance's configuration>
//	org.orch.runtime     = runtime.docker.<name>
//
// A handle is the JSON of HandleInfo (the container id). Observe, Stop,
// Signal, Logs, Update and Delete inspect the container first and refuse
// one without org.orch.managed-by=orch; Adopt lists by the labels only.
//
// # Start
//
// Start maps the instance onto the container: image, command (Cmd),
// entrypoint, env, dir (only when written: the default, the configuration
// directory, means nothing inside an image), user and group, stop signal
// and timeout, rlimits (ulimits), ports, volumes, network, labels, memory
// and cpus. A "No such image" from the Engine leads to one pull; when that
// fails too the error names the Engine and the image. A port taken by
// another process or container is an error naming the port. The name of a
// container of the same address that no longer runs is freed by removing
// that container; a running one with the same configuration hash is taken
// over (Start after a crash between create and recording the handle); a
// running one with another hash (create_before_destroy) makes Start use the
// name with the hash appended. A container whose start fails is removed.
//
// # Build
//
// A build block (build.go) is resolved when the configuration is loaded:
// its context must be a directory and its Dockerfile a file inside it, and
// the hash of the files the Engine would be sent (.dockerignore honoured)
// becomes the block's context_hash, so that an edit there replaces the
// container. Start builds the image (ImageBuild, a tar of the context)
// into image, or BuildTag(project, name, hash), unless an image at that
// tag carries the same org.orch.build-hash label.
//
// # Health
//
// Health (health.go) reports the image's HEALTHCHECK as the Engine runs
// it; with Wait it long-polls on the Engine's event stream of the
// container, so the engine of orch up follows verdicts without polling.
//
// # Watch and Events
//
// Watch waits on the Engine (container wait, condition not-running), so
// the engine of orch up learns of a docker kill, an OOM kill or a docker
// rm -f as it happens, without polling. Events follows the Engine's event
// stream filtered to orch's containers of one runtime (die, oom, destroy,
// start, health_status) and says "disconnected" and "reconnected" around
// a break; both keep trying, 100ms to 5s apart, while the Engine is away.
//
// # What this package must never do
//
//   - stop, signal, update or remove a container without the
//     org.orch.managed-by=orch label, or adopt one of another project or
//     runtime;
//   - pass orch's own environment into a container;
//   - keep global state or register anything from init(): everything hangs
//     off a Provider made by New.
package docker
