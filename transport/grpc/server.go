package grpctransport

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/fedprop/fedprop/coordinator"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// ModelChunkSize is the size of one GetModel chunk: far below gRPC's 4 MiB message limit, so
// a model of any size streams.
const ModelChunkSize = 256 << 10

// writeBufferSize is each connection's write buffer. gRPC's 32 KiB default is taken from a
// pool while a connection writes and given back after, but when a phase starts every waiting
// long poll answers at once, and 5,000 clients then held 160 MiB of them; a task and a reply
// fit in 8 KiB, and a model download goes out in 8 KiB writes instead of 32.
const writeBufferSize = 8 << 10

// receiveWindow is how much of a client's request the coordinator buffers before it reads
// it: HTTP/2 flow control, per call and per connection, held at gRPC's 64 KiB starting window.
// gRPC otherwise grows the window towards the link's bandwidth-delay product, up to megabytes,
// and a result waiting for admission (Admission) would sit in memory whole: 200 he clients
// waiting with 1.8 MB evaluation results held 180 MiB. The cost is throughput on a long link:
// one call moves at most 64 KiB a round trip (1.3 MB/s at 50 ms), and Admission's limit is how
// many move at once.
const receiveWindow = 64 << 10

// maxPollWait caps a client's requested long-poll wait.
const maxPollWait = 60 * time.Second

// SpecLoader turns a StartRun request's YAML into a run to start.
type SpecLoader func(configYAML []byte) (coordinator.RunSpec, error)

// NewGRPCServer builds a gRPC server with fedprop's services, health checking and reflection
// (so grpcurl works against a coordinator). loadSpec may be nil, which disables StartRun.
//
// Every request's fields are checked before it reaches srv, after the interceptors in opts
// (those of Edge.ServerOptions: authentication, roles, rate limits). A request that does not
// parse as protobuf (invalid UTF-8 in a string, malformed bytes) is refused before them with
// InvalidArgument, not INTERNAL (see requestCodec).
func NewGRPCServer(srv *coordinator.Server, coordinatorID string, loadSpec SpecLoader, opts ...grpc.ServerOption) *grpc.Server {
	first := []grpc.ServerOption{grpc.ForceServerCodecV2(requestCodec{encoding.GetCodecV2(protoenc.Name)}),
		grpc.ChainUnaryInterceptor(parsedUnary), grpc.ChainStreamInterceptor(parsedStreams),
		grpc.WriteBufferSize(writeBufferSize), grpc.InitialWindowSize(receiveWindow), grpc.InitialConnWindowSize(receiveWindow)}
	opts = append(append(first, opts...), grpc.ChainUnaryInterceptor(validateUnary))
	g := grpc.NewServer(opts...)
	pb.RegisterClientServiceServer(g, &clientService{srv: srv, coordinatorID: coordinatorID})
	pb.RegisterModelServiceServer(g, &modelService{srv: srv})
	pb.RegisterAdminServiceServer(g, &adminService{srv: srv, loadSpec: loadSpec})
	pb.RegisterOversightServiceServer(g, &oversightService{srv: srv})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range []string{pb.ClientService_ServiceDesc.ServiceName, pb.ModelService_ServiceDesc.ServiceName, pb.AdminService_ServiceDesc.ServiceName, pb.OversightService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return g
}

// Serve serves g on lis until ctx ends, then stops gracefully.
func Serve(ctx context.Context, g *grpc.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			g.Stop()
		}
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	}
}
