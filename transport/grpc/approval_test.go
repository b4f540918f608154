package grpctransport_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/fedprop/fedprop/audit"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// TestApprovalFlowOverGRPC: a committed version is a candidate that cannot be pulled by default;
// only an approver can approve it; approval makes it pullable; every decision is in the
// hash-chained audit log, which verifies, and an edited byte makes verification fail and name
// the entry.
func TestApprovalFlowOverGRPC(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit.jsonl")
	c := startSecureCoordinatorWith(t, tinySpec(t), coordinator.ServerConfig{Audit: audit.NewFileStore(logPath)}, nil)
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
		v, err := c.store.Latest(ctx)
		return err == nil && v.Version >= 1
	}, time.Minute, 10*time.Millisecond)

	owner := grpctransport.NewModelClient(c.dial(pki.RoleOwner, "model-owner"))
	_, _, err := owner.Pull(ctx, 0, false)
	require.ErrorIs(t, err, coordinator.ErrNotFound)
	assert.Contains(t, err.Error(), "no approved version")
	_, _, err = owner.Pull(ctx, 1, false)
	requireCode(t, err, codes.FailedPrecondition, "version 1 is candidate")
	doc, _, err := owner.Pull(ctx, 1, true)
	require.NoError(t, err, "a candidate can be pulled when asked for explicitly")
	assert.Equal(t, uint64(1), doc.Version)

	// Only the approver role may approve: not the owner, not a client.
	for _, role := range []pki.Role{pki.RoleOwner, pki.RoleClient, pki.RoleAdmin} {
		_, err := grpctransport.NewOversightClient(c.dial(role, "someone-"+string(role))).Approve(ctx, 1, "looks fine", false)
		requireCode(t, err, codes.PermissionDenied, "")
	}
	approver := grpctransport.NewOversightClient(c.dial(pki.RoleApprover, "risk-officer"))
	_, err = approver.Approve(ctx, 1, "", false)
	require.ErrorIs(t, err, coordinator.ErrInvalid)
	assert.Contains(t, err.Error(), "reason")
	r, err := approver.Approve(ctx, 1, "validated on the Q3 holdout", false)
	require.NoError(t, err)
	assert.Equal(t, "approved", r.Status)
	_, err = approver.Approve(ctx, 1, "again", false)
	requireCode(t, err, codes.FailedPrecondition, "already approved")

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

	// The audit log: run start, the commit, the approval; it verifies against its head.
	entries, err := audit.NewFileStore(logPath).Entries(ctx)
	require.NoError(t, err)
	var actions []audit.Action
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	assert.Subset(t, actions, []audit.Action{audit.ActionRunStart, audit.ActionCommit, audit.ActionApprove})
	head := c.srv.AuditHead()
	require.NoError(t, audit.Verify(entries, &head))
	approval := entries[len(entries)-1]
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Action == audit.ActionApprove {
			approval = entries[i]
		}
	}
	assert.Equal(t, "risk-officer", approval.Actor)
	assert.Equal(t, "approver", approval.Role)
	assert.Equal(t, r.AuditSeq, approval.Seq)

	// Edit one byte of the approval's reason: verification fails and names that entry.
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	i := bytes.Index(b, []byte("Q3"))
	require.Positive(t, i)
	b[i] = 'Q' + 1
	require.NoError(t, os.WriteFile(logPath, b, 0o600))
	entries, err = audit.NewFileStore(logPath).Entries(ctx)
	if err == nil {
		err = audit.Verify(entries, &head)
	}
	var chain *audit.ChainError
	require.ErrorAs(t, err, &chain)
	assert.ErrorIs(t, err, audit.ErrTampered)
	assert.Contains(t, err.Error(), "entry "+strconv.FormatUint(approval.Seq, 10))
}
