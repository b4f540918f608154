package grpctransport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/task"
)

// Dial connects to a coordinator. Without options the connection is plaintext, and its calls
// fail with a *ConnError that says why when the connection does (see DialTLS); callers that
// bring their own transport credentials through opts get gRPC's errors as they are.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(opts) == 0 {
		opts = newConnWatch(addr, false).options(insecure.NewCredentials())
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", addr, err)
	}
	return conn, nil
}

// Client is the client service over gRPC; it implements client.Coordinator.
type Client struct {
	rpc pb.ClientServiceClient
	// sparse records whether the coordinator's latest task said it decodes sparse sums.
	sparse atomic.Bool

	// mu guards the collective public key this client holds (and its SHA-256), which the
	// coordinator then leaves out of the tasks it sends.
	mu     sync.Mutex
	key    []byte
	keySum []byte
}

// NewClient wraps a connection.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: pb.NewClientServiceClient(conn)}
}

func registrationFromProto(p *pb.RegisterRequest) task.Registration {
	return task.Registration{ClientID: p.GetClientId(), SoftwareVersion: p.GetSoftwareVersion(), IdentityKey: p.GetIdentityKey(),
		TrainRecords: int(p.GetTrainRecords())}
}

// Register implements client.Coordinator.
func (c *Client) Register(ctx context.Context, r task.Registration) error {
	_, err := c.rpc.Register(ctx, &pb.RegisterRequest{ClientId: r.ClientID, SoftwareVersion: r.SoftwareVersion, IdentityKey: r.IdentityKey,
		TrainRecords: int64(r.TrainRecords)})
	return fromStatus(err)
}

// PollTask implements client.Coordinator.
func (c *Client) PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error) {
	// The call itself may take the whole wait; give the network some slack beyond it.
	ctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	defer cancel()
	c.mu.Lock()
	held := c.keySum
	c.mu.Unlock()
	resp, err := c.rpc.PollTask(ctx, &pb.PollTaskRequest{ClientId: clientID, WaitMillis: wait.Milliseconds(), HeldPublicKeySha256: held})
	if err != nil {
		return task.Task{}, false, fromStatus(err)
	}
	if resp.GetTask() == nil {
		return task.Task{}, false, nil
	}
	if err := c.restoreKey(resp.GetTask()); err != nil {
		return task.Task{}, false, fmt.Errorf("task from coordinator: %w", err)
	}
	t, err := taskFromProto(resp.GetTask())
	if err != nil {
		return task.Task{}, false, fmt.Errorf("task from coordinator: %w", err)
	}
	c.sparse.Store(resp.GetTask().GetSparseResults())
	return t, true, nil
}

// ErrKeyNotHeld: a task left out a collective public key this client does not hold (the
// coordinator's answer to an older poll, or a faulty coordinator). The client forgets the key
// it holds, so its next poll gets the key in full.
var ErrKeyNotHeld = errors.New("task names a collective public key this client does not hold")

// restoreKey puts back into p the collective public key the coordinator left out because this
// client holds it, and remembers a key that came in full (checked against its digest).
func (c *Client) restoreKey(p *pb.Task) error {
	sum := p.GetPublicKeySha256()
	if len(sum) == 0 {
		return nil // no key, or a coordinator that sends it in full every time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if key := p.GetPublicKey(); len(key) > 0 {
		if got := sha256.Sum256(key); !bytes.Equal(got[:], sum) {
			return fmt.Errorf("field public_key_sha256: %w: it is not the SHA-256 of the public key sent", task.ErrInvalid)
		}
		if !bytes.Equal(c.keySum, sum) {
			c.key, c.keySum = key, bytes.Clone(sum)
		}
		return nil
	}
	if !bytes.Equal(c.keySum, sum) {
		c.key, c.keySum = nil, nil
		return fmt.Errorf("field public_key: %w", ErrKeyNotHeld)
	}
	p.PublicKey = c.key
	return nil
}

// SubmitResult implements client.Coordinator.
func (c *Client) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	resp, err := c.rpc.SubmitResult(ctx, resultToProto(r, c.sparse.Load()))
	if err != nil {
		return false, fromStatus(err)
	}
	return resp.GetDuplicate(), nil
}

// ModelClient is the model service over gRPC, for model owners.
type ModelClient struct {
	rpc pb.ModelServiceClient
}

// NewModelClient wraps a connection.
func NewModelClient(conn grpc.ClientConnInterface) *ModelClient {
	return &ModelClient{rpc: pb.NewModelServiceClient(conn)}
}

// ModelInfo summarises a committed version.
type ModelInfo struct {
	Version                uint64
	RunID                  string
	Round                  int
	Created                time.Time
	AUC, LogLoss, Accuracy float64
	Status                 string
}

// List lists committed versions, oldest first.
func (c *ModelClient) List(ctx context.Context) ([]ModelInfo, error) {
	resp, err := c.rpc.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	out := make([]ModelInfo, 0, len(resp.GetModels()))
	for _, m := range resp.GetModels() {
		out = append(out, ModelInfo{Version: m.GetVersion(), RunID: m.GetRunId(), Round: int(m.GetRound()),
			Created: time.UnixMilli(m.GetCreatedUnixMillis()).UTC(), AUC: m.GetAuc(), LogLoss: m.GetLogLoss(),
			Accuracy: m.GetAccuracy(), Status: m.GetStatus()})
	}
	return out, nil
}

// maxModelBytes bounds a pulled model document, so a broken server cannot exhaust memory.
const maxModelBytes = 1 << 30

// Pull streams version (0 = the latest approved) and decodes the model document; candidate
// allows a version nobody has approved yet.
func (c *ModelClient) Pull(ctx context.Context, version uint64, candidate bool) (*modelfile.Document, []byte, error) {
	stream, err := c.rpc.GetModel(ctx, &pb.GetModelRequest{Version: version, Candidate: candidate})
	if err != nil {
		return nil, nil, fromStatus(err)
	}
	var buf bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fromStatus(err)
		}
		if chunk.GetTotalBytes() > maxModelBytes || int64(buf.Len()+len(chunk.GetData())) > maxModelBytes {
			return nil, nil, fmt.Errorf("model %d is larger than %d bytes", version, maxModelBytes)
		}
		buf.Write(chunk.GetData())
	}
	doc, err := modelfile.Decode(bytes.NewReader(buf.Bytes()), fmt.Sprintf("version %d from coordinator", version))
	if err != nil {
		return nil, nil, err
	}
	return doc, buf.Bytes(), nil
}

// Card fetches a version's model card (JSON).
func (c *ModelClient) Card(ctx context.Context, version uint64) ([]byte, error) {
	resp, err := c.rpc.GetModelCard(ctx, &pb.GetModelCardRequest{Version: version})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp.GetJson(), nil
}

// AdminClient is the admin service over gRPC, for operators.
type AdminClient struct {
	rpc pb.AdminServiceClient
}

// NewAdminClient wraps a connection.
func NewAdminClient(conn grpc.ClientConnInterface) *AdminClient {
	return &AdminClient{rpc: pb.NewAdminServiceClient(conn)}
}

// StartRun asks the coordinator to start the run configured by configYAML.
func (c *AdminClient) StartRun(ctx context.Context, configYAML []byte) (string, error) {
	resp, err := c.rpc.StartRun(ctx, &pb.StartRunRequest{ConfigYaml: configYAML})
	if err != nil {
		return "", fromStatus(err)
	}
	return resp.GetRunId(), nil
}

// GetRun reports a run (the active one when id is empty).
func (c *AdminClient) GetRun(ctx context.Context, id string) (*pb.Run, error) {
	r, err := c.rpc.GetRun(ctx, &pb.GetRunRequest{RunId: id})
	return r, fromStatus(err)
}

// ListRuns lists the runs the coordinator's store holds, oldest first.
func (c *AdminClient) ListRuns(ctx context.Context) ([]*pb.Run, error) {
	r, err := c.rpc.ListRuns(ctx, &pb.ListRunsRequest{})
	return r.GetRuns(), fromStatus(err)
}

// StopRun stops the active run id, saying why.
func (c *AdminClient) StopRun(ctx context.Context, id, reason string) (*pb.Run, error) {
	r, err := c.rpc.StopRun(ctx, &pb.StopRunRequest{RunId: id, Reason: reason})
	return r, fromStatus(err)
}

// OversightClient is the oversight service over gRPC, for approvers.
type OversightClient struct {
	rpc pb.OversightServiceClient
}

// NewOversightClient wraps a connection.
func NewOversightClient(conn grpc.ClientConnInterface) *OversightClient {
	return &OversightClient{rpc: pb.NewOversightServiceClient(conn)}
}

// Review is the coordinator's answer to an approval or a rejection.
type Review struct {
	Version   uint64
	Status    string
	AuditSeq  uint64
	AuditHash string
}

// PrepareReview asks what a decision on version signs: its content hash, and where it stands.
func (c *OversightClient) PrepareReview(ctx context.Context, version uint64) (coordinator.ReviewSubject, error) {
	r, err := c.rpc.PrepareReview(ctx, &pb.PrepareReviewRequest{Version: version})
	if err != nil {
		return coordinator.ReviewSubject{}, fromStatus(err)
	}
	return coordinator.ReviewSubject{Version: r.GetVersion(), ContentHash: r.GetContentHash(), Status: r.GetStatus(), Flagged: r.GetFlagged()}, nil
}

// Decide makes a decision on version and sends it: it fetches the version's content hash,
// signs the decision with signer (the approver's own certificate key, the one this connection
// authenticates with) and sends it. action is audit.ActionApprove, ActionOverride (an
// approval of a version the fairness policy flagged) or ActionReject.
func (c *OversightClient) Decide(ctx context.Context, signer *pki.Signer, action audit.Action, version uint64, reason string) (Review, error) {
	subject, err := c.PrepareReview(ctx, version)
	if err != nil {
		return Review{}, err
	}
	signed, err := audit.SignDecision(signer, action, audit.VersionSubject(version), subject.ContentHash, reason)
	if err != nil {
		return Review{}, err
	}
	d := coordinator.Decision{Version: version, Reason: reason, Override: action == audit.ActionOverride, ContentHash: subject.ContentHash, Signature: signed}
	if action == audit.ActionReject {
		return c.Reject(ctx, d)
	}
	return c.Approve(ctx, d)
}

// Approve releases a version with a signed decision; d.Override approves one the fairness
// policy flagged.
func (c *OversightClient) Approve(ctx context.Context, d coordinator.Decision) (Review, error) {
	r, err := c.rpc.ApproveModel(ctx, reviewRequest(d))
	if err != nil {
		return Review{}, fromStatus(err)
	}
	return Review{Version: r.GetVersion(), Status: r.GetStatus(), AuditSeq: r.GetAuditSeq(), AuditHash: r.GetAuditHash()}, nil
}

// Reject refuses a version with a signed decision.
func (c *OversightClient) Reject(ctx context.Context, d coordinator.Decision) (Review, error) {
	r, err := c.rpc.RejectModel(ctx, reviewRequest(d))
	if err != nil {
		return Review{}, fromStatus(err)
	}
	return Review{Version: r.GetVersion(), Status: r.GetStatus(), AuditSeq: r.GetAuditSeq(), AuditHash: r.GetAuditHash()}, nil
}

func reviewRequest(d coordinator.Decision) *pb.ReviewRequest {
	return &pb.ReviewRequest{Version: d.Version, Reason: d.Reason, Override: d.Override, ContentHash: d.ContentHash,
		Certificate: d.Signature.Certificate, Signature: d.Signature.Signature}
}
