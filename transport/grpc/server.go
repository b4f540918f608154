package grpctransport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
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

// Service exposes a coordinator.Server as the three gRPC services.
type Service struct {
	pb.UnimplementedClientServiceServer
	pb.UnimplementedModelServiceServer
	pb.UnimplementedAdminServiceServer
	pb.UnimplementedOversightServiceServer

	srv        *coordinator.Server
	loadSpec   SpecLoader
	coordinate string
	keys       keyDigests
}

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
	svc := &Service{srv: srv, loadSpec: loadSpec, coordinate: coordinatorID}
	pb.RegisterClientServiceServer(g, svc)
	pb.RegisterModelServiceServer(g, svc)
	pb.RegisterAdminServiceServer(g, svc)
	pb.RegisterOversightServiceServer(g, svc)
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

// Register implements pb.ClientServiceServer.
func (s *Service) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	err := s.srv.Register(ctx, registrationFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterResponse{CoordinatorId: s.coordinate}, nil
}

// PollTask implements pb.ClientServiceServer.
func (s *Service) PollTask(ctx context.Context, req *pb.PollTaskRequest) (*pb.PollTaskResponse, error) {
	wait := time.Duration(req.GetWaitMillis()) * time.Millisecond
	if wait < 0 {
		return nil, status.Error(codes.InvalidArgument, "field wait_millis: must not be negative")
	}
	wait = min(wait, maxPollWait)
	t, ok, err := s.srv.PollTask(ctx, req.GetClientId(), wait)
	if err != nil {
		return nil, toStatus(err)
	}
	if !ok {
		return &pb.PollTaskResponse{}, nil
	}
	out := taskToProto(t)
	if len(t.PublicKey) > 0 {
		sum := s.keys.digest(t.PublicKey)
		out.PublicKeySha256 = sum[:]
		if bytes.Equal(req.GetHeldPublicKeySha256(), sum[:]) {
			out.PublicKey = nil // the client holds it: hundreds of kilobytes not sent again
		}
	}
	return &pb.PollTaskResponse{Task: out}, nil
}

// keyDigests remembers the SHA-256 of the collective public key the tasks carry: every task
// of a setup shares the core's one copy of the key (which it never changes in place: a new
// setup makes a new key), so its hash is computed once per key, not once per task.
type keyDigests struct {
	mu  sync.Mutex
	key []byte
	sum [sha256.Size]byte
}

// digest returns key's SHA-256.
func (k *keyDigests) digest(key []byte) [sha256.Size]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.key) != len(key) || len(key) == 0 || &k.key[0] != &key[0] {
		k.key, k.sum = key, sha256.Sum256(key)
	}
	return k.sum
}

// SubmitResult implements pb.ClientServiceServer.
func (s *Service) SubmitResult(ctx context.Context, req *pb.SubmitResultRequest) (*pb.SubmitResultResponse, error) {
	r, err := resultFromProto(req)
	if err != nil {
		return nil, toStatus(err)
	}
	dup, err := s.srv.SubmitResult(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitResultResponse{Duplicate: dup}, nil
}

// ListModels implements pb.ModelServiceServer.
func (s *Service) ListModels(ctx context.Context, _ *pb.ListModelsRequest) (*pb.ListModelsResponse, error) {
	versions, err := s.srv.Store().Versions(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListModelsResponse{}
	for _, v := range versions {
		m := &pb.ModelSummary{Version: v.Version, RunId: v.RunID, Round: int32(v.Round), CreatedUnixMillis: v.Created.UnixMilli(), Status: s.srv.Status(v.Version).Status}
		if v.Evaluation != nil {
			m.Auc, m.LogLoss, m.Accuracy = v.Evaluation.AUC, v.Evaluation.LogLoss, v.Evaluation.Accuracy
		}
		out.Models = append(out.Models, m)
	}
	return out, nil
}

// GetModel implements pb.ModelServiceServer: the JSON model document in chunks.
func (s *Service) GetModel(req *pb.GetModelRequest, stream pb.ModelService_GetModelServer) error {
	version, err := s.srv.ReleasedVersion(stream.Context(), req.GetVersion(), req.GetCandidate())
	if err != nil {
		return toStatus(err)
	}
	doc, err := s.srv.ModelDocument(stream.Context(), version)
	if err != nil {
		return toStatus(err)
	}
	var buf bytes.Buffer
	if err := doc.Write(&buf); err != nil {
		return status.Errorf(codes.Internal, "encode model %d: %v", doc.Version, err)
	}
	data := buf.Bytes()
	for off := 0; off < len(data) || off == 0; off += ModelChunkSize {
		end := min(off+ModelChunkSize, len(data))
		if err := stream.Send(&pb.ModelChunk{Version: doc.Version, Data: data[off:end], TotalBytes: int64(len(data))}); err != nil {
			return err
		}
		if end == len(data) {
			break
		}
	}
	return nil
}

// GetModelCard implements pb.ModelServiceServer: the version's model card as JSON.
func (s *Service) GetModelCard(ctx context.Context, req *pb.GetModelCardRequest) (*pb.ModelCard, error) {
	card, err := s.srv.ModelCard(ctx, req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	var buf bytes.Buffer
	if err := card.Write(&buf); err != nil {
		return nil, status.Errorf(codes.Internal, "encode card: %v", err)
	}
	return &pb.ModelCard{Version: card.Model.Version, Json: buf.Bytes()}, nil
}

// PrepareReview implements pb.OversightServiceServer: what an approver's decision on a version
// signs.
func (s *Service) PrepareReview(ctx context.Context, req *pb.PrepareReviewRequest) (*pb.PrepareReviewResponse, error) {
	subject, err := s.srv.ReviewSubject(ctx, req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PrepareReviewResponse{Version: subject.Version, ContentHash: subject.ContentHash, Status: subject.Status, Flagged: subject.Flagged}, nil
}

// ApproveModel implements pb.OversightServiceServer: the caller (an approver, by its
// certificate) releases a version, with a decision signed by that certificate's key.
func (s *Service) ApproveModel(ctx context.Context, req *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	r, err := s.srv.Approve(ctx, reviewer(ctx), decision(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return reviewResponse(req.GetVersion(), r), nil
}

// decision is a review request's signed decision.
func decision(req *pb.ReviewRequest) coordinator.Decision {
	return coordinator.Decision{Version: req.GetVersion(), Reason: req.GetReason(), Override: req.GetOverride(), ContentHash: req.GetContentHash(),
		Signature: pki.Signed{Certificate: req.GetCertificate(), Signature: req.GetSignature()}}
}

// RejectModel implements pb.OversightServiceServer.
func (s *Service) RejectModel(ctx context.Context, req *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	if req.GetOverride() {
		return nil, status.Error(codes.InvalidArgument, "field override: only an approval overrides the fairness policy")
	}
	r, err := s.srv.Reject(ctx, reviewer(ctx), decision(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return reviewResponse(req.GetVersion(), r), nil
}

// reviewer is the caller as its certificate names it; without mutual TLS (--insecure) there is
// no identity, and the audit log says so.
func reviewer(ctx context.Context) coordinator.Reviewer {
	if id, ok := IdentityFromContext(ctx); ok {
		return coordinator.Reviewer{Name: id.Name, Role: string(id.Role)}
	}
	return coordinator.Reviewer{Name: "unauthenticated (insecure mode)", Role: "none"}
}

func reviewResponse(version uint64, r coordinator.Review) *pb.ReviewResponse {
	return &pb.ReviewResponse{Version: version, Status: r.Status, AuditSeq: r.Entry.Seq, AuditHash: r.Entry.Hash}
}

// StartRun implements pb.AdminServiceServer.
func (s *Service) StartRun(ctx context.Context, req *pb.StartRunRequest) (*pb.StartRunResponse, error) {
	if s.loadSpec == nil {
		return nil, status.Error(codes.Unimplemented, "this coordinator does not accept runs over the admin service")
	}
	spec, err := s.loadSpec(req.GetConfigYaml())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "field config_yaml: "+err.Error())
	}
	if err := s.srv.StartRun(ctx, spec); err != nil {
		return nil, toStatus(err)
	}
	return &pb.StartRunResponse{RunId: spec.Config.ID}, nil
}

// GetRun implements pb.AdminServiceServer.
func (s *Service) GetRun(ctx context.Context, req *pb.GetRunRequest) (*pb.Run, error) {
	info, err := s.srv.GetRun(ctx, req.GetRunId())
	if err != nil {
		return nil, toStatus(err)
	}
	st := info.State
	return &pb.Run{
		RunId:             st.ID,
		State:             string(st.Status),
		RoundsTotal:       int32(st.Config.Rounds),
		RoundsCommitted:   int32(st.LastRound),
		LatestVersion:     st.LatestVersion,
		RegisteredClients: int32(info.Registered),
		Message:           st.Message,
		ConsentTracked:    st.ConsentTracked,
		ExcludedNoConsent: int64(st.ExcludedNoConsent),
		TrainingExamples:  int64(st.StatsRecords),
	}, nil
}
