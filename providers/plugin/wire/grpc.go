package wire

import (
	"google.golang.org/grpc"
)

// The HTTP/2 flow-control windows of every plugin connection, both ends:
// fixed, so that gRPC does not estimate the bandwidth-delay product. Its
// estimator sends a PING with every DATA frame received while no PING is
// outstanding, which on a connection of small request/response calls means
// about one more write, read and wakeup on each side for every other call.
// The windows are large enough for the module event stream (4 batches of
// up to 512 events in flight) not to wait for window updates.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// streamWorkers is how many goroutines a plugin's gRPC server keeps to run
// calls: a call is handed to an idle one (whose stack has already grown)
// rather than to a new goroutine; when all are busy, a call gets a new
// goroutine as without workers, so long streams cannot starve calls.
const streamWorkers = 4

// ServerOptions are the gRPC server options of both ends' servers: the
// plugin's (services Provider and Module) and orch's (service Host, served
// back to a module through go-plugin's broker).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// DialOptions are the gRPC dial options of both ends' clients, matching
// ServerOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
}
