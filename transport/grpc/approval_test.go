package grpctransport_test

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store/bolt"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// gatedCoordinator is a coordinator behind mutual TLS on the embedded store, checking
// approvers' signatures against the test CA.
type gatedCoordinator struct {
	*secureCoordinator
	path string
	stop func()
}

func startGatedCoordinator(t *testing.T, spec coordinator.RunSpec) *gatedCoordinator {
	t.Helper()
	p := newTestPKI(t)
	serverFiles, _ := p.issue(pki.RoleCoordinator, "coordinator")
	tlsCfg, err := pki.ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	opts, err := grpctransport.Edge{TLS: tlsCfg, Logger: quietLogger()}.ServerOptions()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "fedprop.db")
	store, err := bolt.Open(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, store, &spec, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger(),
		Reviewers: pki.NewVerifier(p.ca.Certificate())})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test-coordinator", nil, opts...)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			gs.Stop()
			wg.Wait()
			_ = store.Close()
		})
	}
	t.Cleanup(stop)
	return &gatedCoordinator{secureCoordinator: &secureCoordinator{t: t, pki: p, addr: lis.Addr().String(), srv: srv}, path: path, stop: stop}
}

// party issues NAME's kit and returns an oversight client on a connection made with it, and
// the kit's signing key, as `fedprop model approve` loads it.
func (c *gatedCoordinator) party(role pki.Role, name string) (*grpctransport.OversightClient, *pki.Signer) {
	files, _ := c.pki.issue(role, name)
	s, err := pki.LoadSigner(files)
	require.NoError(c.t, err)
	return grpctransport.NewOversightClient(c.dialFiles(files)), s
}

// signer is the signing key of a new kit for NAME.
func (c *gatedCoordinator) signer(role pki.Role, name string) *pki.Signer {
	_, s := c.party(role, name)
	return s
}

// TestApprovalFlowOverGRPC: a committed version is a candidate that cannot be pulled by default;
// only an approver can approve it, with a decision signed by their own certificate key over the
// version's content hash; approval makes it pullable; every decision is in the hash-chained
// audit log in the store, whose chain, head and signatures verify.
func TestApprovalFlowOverGRPC(t *testing.T) {
	c := startGatedCoordinator(t, tinySpec(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Two branches train round 1 (see tinySpec): one committed version, a candidate.
	for _, id := range []string{"bank-a", "bank-b"} {
		cl := pb.NewClientServiceClient(c.dial(pki.RoleClient, id))
		_, err := cl.Register(ctx, &pb.RegisterRequest{ClientId: id})
		require.NoError(t, err)
		go func() {
			for ctx.Err() == nil {
				resp, err := cl.PollTask(ctx, &pb.PollTaskRequest{ClientId: id, WaitMillis: 200})
				if err != nil || resp.GetTask() == nil {
					continue
				}
				tk := resp.GetTask()
				values := []float64{4, 4, 8, 0} // stats: count, sum, sum of squares, excluded
				if tk.GetKind() == pb.TaskKind_TASK_KIND_TRAIN {
					values = []float64{4, 1, -1, 2} // n, n*delta (2 weights), n*loss
				}
				_, _ = cl.SubmitResult(ctx, &pb.SubmitResultRequest{ClientId: id, TaskId: tk.GetId(), RunId: tk.GetRunId(),
					Round: tk.GetRound(), Kind: tk.GetKind(), Sum: &pb.AggregateVector{Plain: values}})
			}
		}()
	}
	require.Eventually(t, func() bool {
		v, err := c.srv.Store().Latest(ctx)
		return err == nil && v.Version >= 1
	}, time.Minute, 10*time.Millisecond)

	owner := grpctransport.NewModelClient(c.dial(pki.RoleOwner, "model-owner"))
	_, _, err := owner.Pull(ctx, 0, false)
	require.ErrorIs(t, err, coordinator.ErrNotFound)
	assert.Contains(t, err.Error(), "no approved version")
	_, _, err = owner.Pull(ctx, 1, false)
	require.ErrorIs(t, err, coordinator.ErrNotApproved, "the sentinel survives the wire")
	assert.Contains(t, err.Error(), "version 1 is candidate")
	doc, _, err := owner.Pull(ctx, 1, true)
	require.NoError(t, err, "a candidate can be pulled when asked for explicitly")
	assert.Equal(t, uint64(1), doc.Version)

	// Only the approver role may prepare or send a decision: not the owner, not a client.
	for _, role := range []pki.Role{pki.RoleOwner, pki.RoleClient, pki.RoleAdmin} {
		oc, key := c.party(role, "someone-"+string(role))
		_, err := oc.PrepareReview(ctx, 1)
		requireCode(t, err, codes.PermissionDenied, "")
		_, err = oc.Decide(ctx, key, audit.ActionApprove, 1, "looks fine")
		requireCode(t, err, codes.PermissionDenied, "")
	}
	approver, key := c.party(pki.RoleApprover, "risk-officer")
	subject, err := approver.PrepareReview(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, "candidate", subject.Status)
	assert.True(t, audit.IsHash(subject.ContentHash))

	_, err = approver.Decide(ctx, key, audit.ActionApprove, 1, "")
	require.ErrorIs(t, err, coordinator.ErrInvalidDecision, "the sentinel survives the wire")
	assert.Contains(t, err.Error(), "reason")
	// The approver's connection, but a decision signed with someone else's key: refused.
	for _, other := range []*pki.Signer{c.signer(pki.RoleOwner, "other-owner"), c.signer(pki.RoleApprover, "other-officer")} {
		_, err = approver.Decide(ctx, other, audit.ActionApprove, 1, "validated on the Q3 holdout")
		requireCode(t, err, codes.PermissionDenied, "decision not signed by its approver")
	}
	r, err := approver.Decide(ctx, key, audit.ActionApprove, 1, "validated on the Q3 holdout")
	require.NoError(t, err)
	assert.Equal(t, "approved", r.Status)
	_, err = approver.Decide(ctx, key, audit.ActionApprove, 1, "again")
	require.ErrorIs(t, err, coordinator.ErrReviewed)
	assert.Contains(t, err.Error(), "already approved")

	doc, _, err = owner.Pull(ctx, 0, false)
	require.NoError(t, err, "approved: the latest released version")
	assert.Equal(t, uint64(1), doc.Version)
	list, err := owner.List(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, list)
	assert.Equal(t, "approved", list[0].Status)

	raw, err := owner.Card(ctx, 1)
	require.NoError(t, err)
	assert.Contains(t, string(raw), "risk-officer", "the card carries the approval record")
	head := c.srv.AuditHead()

	// The audit log, in the store: run start, the commit, the approval with its signature;
	// chain, head and signature verify.
	c.stop()
	s, err := bolt.OpenReadOnly(c.path)
	require.NoError(t, err)
	defer s.Close()
	sum, err := coordinator.VerifyAudit(ctx, s, pki.NewVerifier(c.pki.ca.Certificate()))
	require.NoError(t, err)
	assert.Equal(t, head, sum.Head)
	assert.Equal(t, 1, sum.Decisions)
	entries, _, err := coordinator.Records{Store: s}.AuditLog(ctx)
	require.NoError(t, err)
	var actions []audit.Action
	var approval audit.Entry
	for _, e := range entries {
		actions = append(actions, e.Action)
		if e.Action == audit.ActionApprove {
			approval = e
		}
	}
	assert.Subset(t, actions, []audit.Action{audit.ActionRunStart, audit.ActionCommit, audit.ActionApprove})
	assert.Equal(t, "risk-officer", approval.Actor)
	assert.Equal(t, "approver", approval.Role)
	assert.Equal(t, r.AuditSeq, approval.Seq)
	assert.Equal(t, subject.ContentHash, approval.Digest)
	require.NotNil(t, approval.Signature)
	assert.Equal(t, audit.ActionRunStart, entries[0].Action, "the run's start is logged with its first record")
	v1, err := coordinator.Records{Store: s}.Version(ctx, 1)
	require.NoError(t, err)
	h, err := audit.ParseHead(v1.AuditHead)
	require.NoError(t, err)
	assert.Equal(t, audit.ActionCommit, entries[h.Seq-1].Action, "version 1 records the head its commit made")
	assert.Equal(t, "version "+strconv.Itoa(1), entries[h.Seq-1].Subject)
}
