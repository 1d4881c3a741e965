//go:build !noetcd

package cli

import "github.com/orch-dev/orch/executor/state/etcdstate"

// The etcd backend is linked here, the one place that wires concrete
// pieces together; the state package only knows the interface. The
// single-host path never calls into it: state.Open uses it only when a
// backend is declared or the state directory's pointer names it. What
// every command pays for linking it is the etcd client's package
// initialisation (about 3 ms, mostly registering its protobuf types);
// go build -tags noetcd leaves it out (a declared etcd backend is then
// refused: no "etcd" backend in this orch).
func init() { etcdstate.Register() }
