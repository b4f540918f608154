package grpctransport_test

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/release/audit"
	memstore "github.com/fedprop/fedprop/store/mem"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// hostileMaxMessage is the test coordinator's max_message_bytes.
const hostileMaxMessage = 64 << 10

// TestHostileRequestsAreRefusedAndTheRoundCompletesExactly drives a mutual-TLS coordinator
// over real gRPC into round 1, sends malformed, impersonating, stale, replayed and oversized
// requests, checks each status and message, and then submits the two valid updates: the
// committed version must be their exact FedAvg, so no rejected request touched the round.
func TestHostileRequestsAreRefusedAndTheRoundCompletesExactly(t *testing.T) {
	c := startSecureCoordinator(t, tinySpec(t), func(e *grpctransport.Edge) {
		e.MaxRecvMsgBytes = hostileMaxMessage
		e.RateLimit = grpctransport.RateLimit{PerSecond: 200, Burst: 400}
	})
	a := pb.NewClientServiceClient(c.dial(pki.RoleClient, "bank-a"))
	b := pb.NewClientServiceClient(c.dial(pki.RoleClient, "bank-b"))
	stranger := pb.NewClientServiceClient(c.dial(pki.RoleClient, "bank-c")) // valid certificate, never registered
	ownerConn := c.dial(pki.RoleOwner, "model-owner")
	owner := pb.NewModelServiceClient(ownerConn)
	ownerAsClient := pb.NewClientServiceClient(ownerConn)
	admin := pb.NewAdminServiceClient(c.dial(pki.RoleAdmin, "operator"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	poll := func(cl pb.ClientServiceClient, id string, kind pb.TaskKind) *pb.Task {
		t.Helper()
		var task *pb.Task
		require.Eventually(t, func() bool {
			resp, err := cl.PollTask(ctx, &pb.PollTaskRequest{ClientId: id, WaitMillis: 5000})
			require.NoError(t, err)
			task = resp.GetTask()
			return task != nil && task.GetKind() == kind
		}, time.Minute, time.Millisecond, "%s gets a %v task", id, kind)
		return task
	}
	answer := func(id string, task *pb.Task, values ...float64) *pb.SubmitResultRequest {
		return &pb.SubmitResultRequest{ClientId: id, TaskId: task.GetId(), RunId: task.GetRunId(), Round: task.GetRound(),
			Kind: task.GetKind(), Sum: &pb.AggregateVector{Plain: values}}
	}

	// Stats phase: both branches report x with mean 1 and variance 1 (count, sum, sum of
	// squares, excluded rows).
	for _, reg := range []struct {
		cl pb.ClientServiceClient
		id string
	}{{a, "bank-a"}, {b, "bank-b"}} {
		_, err := reg.cl.Register(ctx, &pb.RegisterRequest{ClientId: reg.id, SoftwareVersion: "test"})
		require.NoError(t, err)
	}
	statsA := poll(a, "bank-a", pb.TaskKind_TASK_KIND_STATS)
	statsB := poll(b, "bank-b", pb.TaskKind_TASK_KIND_STATS)
	statsAnswerA := answer("bank-a", statsA, 4, 4, 8, 0)
	_, err := a.SubmitResult(ctx, statsAnswerA)
	require.NoError(t, err)
	_, err = b.SubmitResult(ctx, answer("bank-b", statsB, 4, 4, 8, 0))
	require.NoError(t, err)

	// Round 1: the global model is (0, 0); a train result is n, n*delta (2 values), n*loss.
	trainA := poll(a, "bank-a", pb.TaskKind_TASK_KIND_TRAIN)
	trainB := poll(b, "bank-b", pb.TaskKind_TASK_KIND_TRAIN)
	require.Equal(t, []float64{0, 0}, trainA.GetWeights())
	require.EqualValues(t, 1, trainA.GetRound())
	validA := []float64{2, 2 * 0.5, 2 * -1, 2 * 0.25}  // n=2, delta=(0.5, -1), loss 0.25
	validB := []float64{6, 6 * 0.25, 6 * 0.5, 6 * 0.5} // n=6, delta=(0.25, 0.5), loss 0.5

	// submitA sends bank-a's valid train answer after mod has spoilt it.
	submitA := func(mod func(r *pb.SubmitResultRequest)) func() (proto.Message, error) {
		return func() (proto.Message, error) {
			r := answer("bank-a", trainA, validA...)
			mod(r)
			return a.SubmitResult(ctx, r)
		}
	}
	values := func(v ...float64) func() (proto.Message, error) {
		return submitA(func(r *pb.SubmitResultRequest) { r.Sum = &pb.AggregateVector{Plain: v} })
	}
	register := func(mod func(r *pb.RegisterRequest)) func() (proto.Message, error) {
		return func() (proto.Message, error) {
			r := &pb.RegisterRequest{ClientId: "bank-a", SoftwareVersion: "test"}
			mod(r)
			return a.Register(ctx, r)
		}
	}
	getRun := func(id string) func() (proto.Message, error) {
		return func() (proto.Message, error) { return admin.GetRun(ctx, &pb.GetRunRequest{RunId: id}) }
	}
	nan, inf := math.NaN(), math.Inf(1)
	const (
		invalid = codes.InvalidArgument
		stale   = codes.FailedPrecondition
		denied  = codes.PermissionDenied
	)
	cases := []struct {
		name string
		call func() (proto.Message, error)
		code codes.Code
		msgs []string
	}{
		// Impersonation and roles.
		{"register as another client", register(func(r *pb.RegisterRequest) { r.ClientId = "bank-b" }), denied, []string{"field client_id", `certificate is for client "bank-a"`}},
		{"poll as another client", func() (proto.Message, error) {
			return a.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-b"})
		}, denied, []string{"field client_id", `"bank-b" is not the caller`}},
		{"submit another client's task as that client", func() (proto.Message, error) {
			return a.SubmitResult(ctx, answer("bank-b", trainB, validB...))
		}, denied, []string{"field client_id"}},
		{"submit with no client id", submitA(func(r *pb.SubmitResultRequest) { r.ClientId = "" }), denied, []string{"field client_id"}},
		{"owner certificate submits for a client", func() (proto.Message, error) {
			return ownerAsClient.SubmitResult(ctx, answer("bank-a", trainA, validA...))
		}, denied, []string{"role owner (model-owner) may not call /fedprop.v1.ClientService/SubmitResult"}},
		{"client certificate pulls a model", func() (proto.Message, error) {
			stream, err := pb.NewModelServiceClient(c.dial(pki.RoleClient, "bank-d")).GetModel(ctx, &pb.GetModelRequest{})
			if err != nil {
				return nil, err
			}
			return stream.Recv()
		}, denied, []string{"role client (bank-d) may not call /fedprop.v1.ModelService/GetModel"}},
		{"unregistered client polls", func() (proto.Message, error) {
			return stranger.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-c"})
		}, stale, []string{"field client_id", "unknown client"}},
		{"unregistered client submits", func() (proto.Message, error) {
			r := answer("bank-c", trainA, validA...)
			r.TaskId = strings.Replace(trainA.GetId(), "bank-a", "bank-c", 1)
			return stranger.SubmitResult(ctx, r)
		}, stale, []string{"field client_id", "unknown client"}},

		// Registration fields.
		{"software version too long", register(func(r *pb.RegisterRequest) { r.SoftwareVersion = strings.Repeat("9", 65) }), invalid, []string{"field software_version", "65 bytes, at most 64"}},
		{"software version with a newline", register(func(r *pb.RegisterRequest) { r.SoftwareVersion = "1.0\nlevel=ERROR forged" }), invalid, []string{"field software_version", "unprintable"}},
		{"identity key too short", register(func(r *pb.RegisterRequest) { r.IdentityKey = make([]byte, 31) }), invalid, []string{"field identity_key", "31 bytes, want 32"}},
		{"identity key too long", register(func(r *pb.RegisterRequest) { r.IdentityKey = make([]byte, 64) }), invalid, []string{"field identity_key", "64 bytes"}},

		// Polling.
		{"negative poll wait", func() (proto.Message, error) {
			return a.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-a", WaitMillis: -1})
		}, invalid, []string{"field wait_millis", "negative"}},

		// Task, run and round ids.
		{"empty task id", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = "" }), invalid, []string{"field task_id", "empty"}},
		{"task id too long", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = strings.Repeat("t", 300) }), invalid, []string{"field task_id", "300 bytes, at most 256"}},
		{"task id with a control character", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = trainA.GetId() + "\x00" }), invalid, []string{"field task_id", "unprintable"}},
		{"fabricated task id", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = "hostile/train/r1/a1/bank-z" }), stale, []string{"field task_id", "not outstanding"}},
		{"another client's task id", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = trainB.GetId() }), stale, []string{"field task_id", "not outstanding for this client"}},
		{"a task id of an attempt never made", submitA(func(r *pb.SubmitResultRequest) {
			r.TaskId = strings.Replace(trainA.GetId(), "/a1/", "/a7/", 1)
		}), stale, []string{"field task_id"}},
		{"replay of an accepted result", func() (proto.Message, error) { return a.SubmitResult(ctx, statsAnswerA) }, codes.OK, nil},
		{"replay of an accepted result, with other content", submitA(func(r *pb.SubmitResultRequest) { r.TaskId = statsA.GetId(); r.Round = 0 }),
			invalid, []string{"field task_id", "already answered"}},
		{"replay of an accepted result, one value changed", func() (proto.Message, error) {
			r := answer("bank-a", statsA, 4, 4, 8, 1)
			return a.SubmitResult(ctx, r)
		}, invalid, []string{"field task_id", "already answered"}},
		{"empty run id", submitA(func(r *pb.SubmitResultRequest) { r.RunId = "" }), invalid, []string{"field run_id", "empty"}},
		{"run id too long", submitA(func(r *pb.SubmitResultRequest) { r.RunId = strings.Repeat("r", 200) }), invalid, []string{"field run_id", "at most 128"}},
		{"another run", submitA(func(r *pb.SubmitResultRequest) { r.RunId = "other-run" }), stale, []string{"field run_id", `the active run is "hostile"`}},
		{"negative round", submitA(func(r *pb.SubmitResultRequest) { r.Round = -1 }), invalid, []string{"field round", "negative"}},
		{"future round", submitA(func(r *pb.SubmitResultRequest) { r.Round = 2 }), invalid, []string{"field round", "is for round 1"}},
		{"past round", submitA(func(r *pb.SubmitResultRequest) { r.Round = 0 }), invalid, []string{"field round", "is for round 1"}},

		// Kinds.
		{"unspecified kind", submitA(func(r *pb.SubmitResultRequest) { r.Kind = pb.TaskKind_TASK_KIND_UNSPECIFIED }), invalid, []string{"field kind", "not a task kind"}},
		{"unknown kind", submitA(func(r *pb.SubmitResultRequest) { r.Kind = 99 }), invalid, []string{"field kind", "not a task kind"}},
		{"wrong kind", submitA(func(r *pb.SubmitResultRequest) { r.Kind = pb.TaskKind_TASK_KIND_EVALUATE }), invalid, []string{"field kind", "is a train task, got evaluate"}},

		// Vectors: dimensions, values, encodings, sizes.
		{"no sum", submitA(func(r *pb.SubmitResultRequest) { r.Sum = nil }), invalid, []string{"field sum", "missing"}},
		{"empty sum", values(), invalid, []string{"field sum", "0 values, want 4"}},
		{"sum one short", values(2, 1, -2), invalid, []string{"field sum", "3 values, want 4"}},
		{"sum one long", values(2, 1, -2, 0.5, 0), invalid, []string{"field sum", "5 values, want 4"}},
		{"NaN", values(2, nan, -2, 0.5), invalid, []string{"field sum.plain", "value 1 is NaN"}},
		{"+Inf", values(2, 1, inf, 0.5), invalid, []string{"field sum.plain", "value 2 is +Inf"}},
		{"-Inf", values(2, 1, -2, -inf), invalid, []string{"field sum.plain", "value 3 is -Inf"}},
		{"NaN example count", values(nan, 1, -2, 0.5), invalid, []string{"field sum.plain", "value 0 is NaN"}},
		{"zero example count", values(0, 1, -2, 0.5), invalid, []string{"field sum.plain", "example count 0 must be at least 1"}},
		{"negative example count", values(-2, 1, -2, 0.5), invalid, []string{"field sum.plain", "example count -2 must be at least 1"}},
		// Refused at the edge already: over mutual TLS an encrypted result must carry its
		// client's signature (the core's own refusal is in coordinator's TestCoreRejects...).
		{"ciphertext in a plaintext run", submitA(func(r *pb.SubmitResultRequest) {
			r.Sum = &pb.AggregateVector{Ciphertext: []byte{1, 2, 3}, Length: 4}
		}), invalid, []string{"field endorsement", "signature over its ciphertext"}},
		{"plaintext and ciphertext", submitA(func(r *pb.SubmitResultRequest) { r.Sum.Ciphertext = []byte{1} }), invalid, []string{"field sum", "both plaintext and ciphertext"}},
		{"ciphertext without a length", submitA(func(r *pb.SubmitResultRequest) {
			r.Sum = &pb.AggregateVector{Ciphertext: []byte{1, 2, 3}}
		}), invalid, []string{"field sum.length", "must be positive with a ciphertext"}},
		{"length disagrees with the values", submitA(func(r *pb.SubmitResultRequest) { r.Sum.Length = 7 }), invalid, []string{"field sum.length", "7, but the sum carries 4"}},
		{"negative length", submitA(func(r *pb.SubmitResultRequest) { r.Sum.Length = -4 }), invalid, []string{"field sum.length"}},
		{"message over max_message_bytes", values(make([]float64, hostileMaxMessage/8+1)...), codes.ResourceExhausted, []string{"larger than max"}},

		// Other services.
		{"owner pulls a version that does not exist", func() (proto.Message, error) {
			stream, err := owner.GetModel(ctx, &pb.GetModelRequest{Version: 99})
			if err != nil {
				return nil, err
			}
			return stream.Recv()
		}, codes.NotFound, []string{"not found"}},
		{"run id too long to look up", getRun(strings.Repeat("r", 129)), invalid, []string{"field run_id", "129 bytes"}},
		{"run id with a control character", getRun("run\x1b[2J"), invalid, []string{"field run_id", "unprintable"}},
		{"unknown run", getRun("no-such-run"), codes.NotFound, []string{"not found"}},
		{"empty run configuration", func() (proto.Message, error) { return admin.StartRun(ctx, &pb.StartRunRequest{}) }, invalid, []string{"field config_yaml", "empty"}},
	}
	require.GreaterOrEqual(t, len(cases), 30)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.call()
			if tc.code == codes.OK {
				require.NoError(t, err)
				if r, ok := resp.(*pb.SubmitResultResponse); ok {
					assert.True(t, r.GetDuplicate(), "a replayed, accepted result is acknowledged as a duplicate and not counted again")
				}
				return
			}
			requireCode(t, err, tc.code, "")
			for _, m := range tc.msgs {
				assert.Contains(t, err.Error(), m)
			}
		})
	}

	// The round is intact: both tasks are still outstanding and nothing was committed.
	again := poll(a, "bank-a", pb.TaskKind_TASK_KIND_TRAIN)
	assert.Equal(t, trainA.GetId(), again.GetId())
	_, err = c.store.Latest(ctx)
	require.ErrorIs(t, err, coordinator.ErrNotFound)

	// The valid updates complete the round, and the committed model is their exact FedAvg:
	// global + (sum of n_i*delta_i) / (sum of n_i) = (0,0) + (1 + 1.5, -2 + 3) / 8.
	_, err = a.SubmitResult(ctx, answer("bank-a", trainA, validA...))
	require.NoError(t, err)
	dup, err := a.SubmitResult(ctx, answer("bank-a", trainA, validA...))
	require.NoError(t, err)
	assert.True(t, dup.GetDuplicate())
	_, err = b.SubmitResult(ctx, answer("bank-b", trainB, validB...))
	require.NoError(t, err)

	v, err := c.store.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v.Version)
	assert.Equal(t, 1, v.Round)
	assert.Equal(t, []float64{2.5 / 8, 1.0 / 8}, v.Weights, "exactly the FedAvg of the two valid updates")
	assert.Equal(t, 2, v.Contributors)
	assert.Equal(t, 8.0, v.Examples)
	assert.Equal(t, (0.5+3)/8, v.TrainLoss)

	// After the commit, round 1's task is stale for anyone who did not answer it in time.
	_, err = a.SubmitResult(ctx, answer("bank-a", trainA, validA...))
	require.NoError(t, err, "bank-a's own accepted result is still a harmless duplicate")
	r := answer("bank-a", trainA, validA...)
	r.TaskId = strings.Replace(trainA.GetId(), "/a1/", "/a2/", 1)
	_, err = a.SubmitResult(ctx, r)
	requireCode(t, err, stale, "field task_id")
}

// rawMessage is a request's wire bytes, sent as they are: the client's own codec would refuse
// to encode invalid UTF-8.
type rawMessage struct{ b []byte }

// rawCodec sends and receives rawMessage bytes unchanged.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMessage).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMessage).b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// wire encodes fields of message m (by field name) as raw wire bytes: strings and bytes as
// given, even when they are not UTF-8.
func wire(m proto.Message, fields ...any) []byte {
	var b []byte
	md := m.ProtoReflect().Descriptor()
	for i := 0; i < len(fields); i += 2 {
		fd := md.Fields().ByName(protoreflect.Name(fields[i].(string)))
		b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
		b = protowire.AppendBytes(b, []byte(fields[i+1].(string)))
	}
	return b
}

// TestUnparsableRequestsAreInvalidArgument sends requests that are no valid protobuf: invalid
// UTF-8 in a string field, truncated or mistyped wire bytes. gRPC would answer INTERNAL, which
// blames the server (and invites retries); the edge answers InvalidArgument naming the field
// where it can, on unary calls and streams alike, and a valid request still works after.
func TestUnparsableRequestsAreInvalidArgument(t *testing.T) {
	c := startSecureCoordinator(t, tinySpec(t), nil)
	client := c.dial(pki.RoleClient, "bank-a")
	owner := c.dial(pki.RoleOwner, "model-owner")
	admin := c.dial(pki.RoleAdmin, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const badUTF8 = "v1.0\xff\xfe"
	unary := func(conn *grpc.ClientConn, method string, b []byte) func() error {
		return func() error {
			return conn.Invoke(ctx, method, &rawMessage{b}, &rawMessage{}, grpc.ForceCodecV2(rawCodec{}))
		}
	}
	stream := func(conn *grpc.ClientConn, method string, b []byte) func() error {
		return func() error {
			s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method, grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				return err
			}
			if err := s.SendMsg(&rawMessage{b}); err != nil {
				return err
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			return s.RecvMsg(&rawMessage{})
		}
	}
	reservedField := protowire.AppendTag(wire(&pb.GetRunRequest{}, "run_id", "r"), protowire.MaxValidNumber, protowire.BytesType)
	reservedField = protowire.AppendBytes(reservedField, []byte("level=ERROR forged"))
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msgs []string
	}{
		{"invalid UTF-8 in a registration", unary(client, pb.ClientService_Register_FullMethodName,
			wire(&pb.RegisterRequest{}, "client_id", "bank-a", "software_version", badUTF8)),
			codes.InvalidArgument, []string{"field software_version", "not valid UTF-8"}},
		{"invalid UTF-8 in a task id", unary(client, pb.ClientService_SubmitResult_FullMethodName,
			wire(&pb.SubmitResultRequest{}, "client_id", "bank-a", "task_id", "hostile/train/\xc3"+"(")),
			codes.InvalidArgument, []string{"field task_id", "not valid UTF-8"}},
		{"invalid UTF-8 in the client id", unary(client, pb.ClientService_PollTask_FullMethodName,
			wire(&pb.PollTaskRequest{}, "client_id", "bank-a\xff")),
			codes.InvalidArgument, []string{"field client_id", "not valid UTF-8"}},
		{"truncated message", unary(client, pb.ClientService_Register_FullMethodName, []byte{0x0a, 0x05, 'b'}),
			codes.InvalidArgument, []string{"not a valid protobuf message"}},
		{"invalid UTF-8 in an admin's run id", unary(admin, pb.AdminService_GetRun_FullMethodName, wire(&pb.GetRunRequest{}, "run_id", badUTF8)),
			codes.InvalidArgument, []string{"field run_id", "not valid UTF-8"}},
		{"a field number the edge reserves", unary(admin, pb.AdminService_GetRun_FullMethodName, reservedField),
			codes.InvalidArgument, []string{"reserved"}},
		{"garbage on a stream", stream(owner, pb.ModelService_GetModel_FullMethodName, []byte{0xff, 0xff, 0xff}),
			codes.InvalidArgument, []string{"not a valid protobuf message"}},
		{"garbage in a health check", unary(client, healthpb.Health_Check_FullMethodName, []byte{0x0a, 0x7f}),
			codes.InvalidArgument, []string{"not a valid protobuf message"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			requireCode(t, err, tc.code, "")
			for _, m := range tc.msgs {
				assert.Contains(t, err.Error(), m)
			}
			assert.NotContains(t, err.Error(), "forged", "the refusal echoes no text of the caller's")
		})
	}
	_, err := pb.NewClientServiceClient(client).Register(ctx, &pb.RegisterRequest{ClientId: "bank-a", SoftwareVersion: "test"})
	require.NoError(t, err, "a valid request on the same connection is served")
}

// TestStartRunRefusesANaNConfigurationAndAuditsNothing starts a run over the admin service
// whose cohort_fraction is NaN, through a loader that does not validate: the coordinator
// itself refuses it with InvalidArgument naming the key, keeps running, and its audit log
// records no start.
func TestStartRunRefusesANaNConfigurationAndAuditsNothing(t *testing.T) {
	spec := tinySpec(t)
	log := &audit.MemStore{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := coordinator.NewServer(ctx, memstore.New(), nil, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger(), Audit: log})
	require.NoError(t, err)
	lenient := func(doc []byte) (coordinator.RunSpec, error) {
		var rc coordinator.RunConfig
		if err := yaml.Unmarshal(doc, &rc); err != nil {
			return coordinator.RunSpec{}, err
		}
		return coordinator.RunSpec{Config: rc.WithDefaults(), Schema: spec.Schema, SchemaYAML: spec.SchemaYAML}, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test-coordinator", lenient)
	done := make(chan struct{}, 2)
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); gs.Stop(); <-done; <-done }()
	conn, err := grpctransport.Dial(lis.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	admin := pb.NewAdminServiceClient(conn)

	for _, tc := range []struct{ name, doc, key string }{
		{"NaN cohort fraction", "id: nan-run\nmin_clients: 2\ncohort_fraction: .nan\n", "run.cohort_fraction"},
		{"infinite learning rate", "id: inf-run\nmin_clients: 2\ntrain: {learning_rate: .inf}\n", "run.train.learning_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.StartRun(ctx, &pb.StartRunRequest{ConfigYaml: []byte(tc.doc)})
			requireCode(t, err, codes.InvalidArgument, tc.key)
			assert.Contains(t, err.Error(), "must be a finite number")
		})
	}
	entries, err := log.Entries(ctx)
	require.NoError(t, err)
	assert.Empty(t, entries, "no run started, so none is audited")
	_, err = admin.StartRun(ctx, &pb.StartRunRequest{ConfigYaml: []byte("id: fine\nmin_clients: 2\ncohort_fraction: 0.5\n")})
	require.NoError(t, err, "the coordinator still starts a valid run")
	entries, err = log.Entries(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "fine", entries[0].Subject)
}
