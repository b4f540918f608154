package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// gatedStore is an embedded store with three committed versions and a CA with kits for an
// approver and an owner.
type gatedStore struct {
	dir, path string
	ca        *pki.CA
	caPath    string
	approver  pki.TLSFiles
	owner     pki.TLSFiles
}

func newGatedStore(t *testing.T) *gatedStore {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.InitCA(dir, pki.InitOptions{Name: "test"})
	require.NoError(t, err)
	g := &gatedStore{dir: dir, path: filepath.Join(dir, "fedprop.db"), ca: ca, caPath: filepath.Join(dir, pki.CertFile("ca"))}
	kit := func(role pki.Role, name string) pki.TLSFiles {
		cred, err := ca.Issue(pki.IssueRequest{Role: role, Name: name})
		require.NoError(t, err)
		files, err := ca.WriteKit(dir, cred)
		require.NoError(t, err)
		return files
	}
	g.approver, g.owner = kit(pki.RoleApprover, "risk-officer"), kit(pki.RoleOwner, "model-owner")
	require.FileExists(t, g.caPath)
	b, err := bolt.Open(g.path)
	require.NoError(t, err)
	s := coordinator.Records{Store: b}
	ctx := context.Background()
	_, head, err := s.AuditLog(ctx)
	require.NoError(t, err)
	l := audit.NewLog(nil, head, audit.Options{})
	_, err = l.AppendWith(ctx, []audit.Record{{Actor: "coordinator", Role: "coordinator", Action: audit.ActionRunStart, Subject: "r"}},
		func(es []audit.Entry) error { return s.SaveRunAudited(ctx, coordinator.RunState{ID: "r"}, es) })
	require.NoError(t, err)
	for n := uint64(1); n <= 3; n++ {
		v := coordinator.ModelVersion{Version: n, Parent: n - 1, RunID: "r", Round: int(n), Weights: []float64{-2.6912345, 0.5}}
		_, err := l.AppendWith(ctx, []audit.Record{{Actor: "coordinator", Role: "coordinator", Action: audit.ActionCommit, Subject: audit.VersionSubject(n)}},
			func(es []audit.Entry) error {
				v.AuditHead = audit.HeadOf(es).String()
				return s.CommitAudited(ctx, v, coordinator.RunState{ID: "r", LastRound: int(n), LatestVersion: n}, es)
			})
		require.NoError(t, err)
	}
	require.NoError(t, b.Close())
	return g
}

// approve runs a coordinator on the store behind mutual TLS and approves version 3 with
// `fedprop model approve`, as the approver, then stops the coordinator.
func (g *gatedStore) approve(t *testing.T, kit pki.TLSFiles, args ...string) (int, string, string) {
	t.Helper()
	s, err := bolt.Open(g.path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, s, nil, coordinator.ServerConfig{Reviewers: pki.NewVerifier(g.ca.Certificate()), Logger: quietLog(),
		TickInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	cred, err := g.ca.Issue(pki.IssueRequest{Role: pki.RoleCoordinator, Name: "coordinator-" + strconv.Itoa(len(args))})
	require.NoError(t, err)
	serverDir := t.TempDir()
	serverKit, err := g.ca.WriteKit(serverDir, cred)
	require.NoError(t, err)
	tlsCfg, err := pki.ServerTLSConfig(pki.TLSFiles{CA: g.caPath, Cert: serverKit.Cert, Key: serverKit.Key})
	require.NoError(t, err)
	opts, err := grpctransport.Edge{TLS: tlsCfg, Logger: quietLog()}.ServerOptions()
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test", nil, opts...)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	defer func() { cancel(); gs.Stop(); wg.Wait(); _ = s.Close() }()
	argv := append([]string{"model", "--coordinator", lis.Addr().String(), "--tls-ca", g.caPath, "--tls-cert", kit.Cert, "--tls-key", kit.Key}, args...)
	return runCLI(t, argv...)
}

// rewriteEntry changes the newest audit entry in the store file as a forger with the file
// would: edit it, then (reseal) recompute its hash, its record's checksum, the store's head
// and the head file beside the store, so that everything but the signature is consistent.
func (g *gatedStore) rewriteEntry(t *testing.T, reseal bool, edit func(e *audit.Entry)) uint64 {
	t.Helper()
	db, err := bbolt.Open(g.path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	var seq uint64
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k, v := b.Cursor().Last()
		seq = binary.BigEndian.Uint64(k)
		header := len("fedprop.record/v1 ") + 64 + 1
		var e audit.Entry
		require.NoError(t, json.Unmarshal(v[header:], &e))
		edit(&e)
		if !reseal {
			body, err := json.Marshal(e)
			require.NoError(t, err)
			return b.Put(k, append(append([]byte(nil), v[:header]...), body...))
		}
		e.Hash = e.ComputeHash()
		rec, err := coordinator.EncodeEntry(e)
		require.NoError(t, err)
		if err := b.Put(k, store.SealRecord(store.RecordAudit, store.EntryKey(seq), rec.Body)); err != nil {
			return err
		}
		head := audit.Head{Seq: seq, Hash: e.Hash}.String()
		require.NoError(t, os.WriteFile(g.path+bolt.HeadFileSuffix, []byte(head+"\n"), 0o600))
		return tx.Bucket([]byte("meta")).Put([]byte("audit_head"), store.SealRecord(store.RecordHead, "", []byte(head)))
	}))
	return seq
}

// TestAuditVerify is issue 12's done-when: an approval signed by an approver (through `fedprop
// model approve`) verifies with `fedprop audit verify`; the same entry with one byte changed,
// or re-signed by an owner's key, fails and names the entry.
func TestAuditVerify(t *testing.T) {
	cases := []struct {
		name   string
		reseal bool
		edit   func(g *gatedStore, e *audit.Entry)
		want   []string
	}{
		{"untouched", false, nil, nil},
		{"one byte of the reason changed", false, func(_ *gatedStore, e *audit.Entry) { e.Reason = strings.Replace(e.Reason, "Q3", "Q4", 1) },
			[]string{"checksum mismatch"}},
		{"one byte of the reason changed, hashes and head recomputed", true, func(_ *gatedStore, e *audit.Entry) {
			e.Reason = strings.Replace(e.Reason, "Q3", "Q4", 1)
		}, []string{"decision not signed by its approver", "does not match"}},
		{"re-signed by an owner's key", true, func(g *gatedStore, e *audit.Entry) {
			s, err := pki.LoadSigner(g.owner)
			require.NoError(t, err)
			signed, err := audit.SignDecision(s, e.Action, e.Subject, e.Digest, e.Reason)
			require.NoError(t, err)
			e.Signature = &signed
		}, []string{"decision not signed by its approver", "signed by owner/model-owner"}},
		{"re-signed by an owner's key, as the owner", true, func(g *gatedStore, e *audit.Entry) {
			s, err := pki.LoadSigner(g.owner)
			require.NoError(t, err)
			signed, err := audit.SignDecision(s, e.Action, e.Subject, e.Digest, e.Reason)
			require.NoError(t, err)
			e.Signature, e.Actor = &signed, "model-owner"
		}, []string{"decision not signed by its approver", "signed by owner/model-owner"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedStore(t)
			code, out, errOut := g.approve(t, g.approver, "approve", "3", "--reason", "validated on the Q3 holdout")
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "version 3 is approved, signed by approver/risk-officer (audit entry 5")
			seq := uint64(5)
			if tc.edit != nil {
				seq = g.rewriteEntry(t, tc.reseal, func(e *audit.Entry) { tc.edit(g, e) })
			}
			code, out, errOut = runCLI(t, "audit", "verify", "--store", g.path, "--tls-ca", g.caPath)
			if tc.want == nil {
				require.Equal(t, 0, code, errOut)
				assert.Contains(t, out, "verifies: 5 entries")
				assert.Contains(t, out, "1 decisions signed by their approvers")
				return
			}
			assert.Equal(t, 1, code, out)
			assert.Contains(t, errOut, "audit entry "+strconv.FormatUint(seq, 10))
			for _, w := range tc.want {
				assert.Contains(t, errOut, w)
			}
		})
	}
}

func TestModelApproveNeedsTheApproversKit(t *testing.T) {
	g := newGatedStore(t)
	code, _, errOut := runCLI(t, "model", "approve", "3", "--reason", "ok", "--coordinator", "127.0.0.1:1", "--insecure")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "tls.cert")
	assert.Contains(t, errOut, "signed with the key of the approver's own certificate")

	// An owner's kit signs, but the coordinator refuses the owner the oversight service.
	code, _, errOut = g.approve(t, g.owner, "approve", "3", "--reason", "ok")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "PermissionDenied")
}

// TestAuditExport: the export is the store's log, one JSON line per entry; with the head it
// printed it verifies, and one edited byte fails naming the entry.
func TestAuditExport(t *testing.T) {
	g := newGatedStore(t)
	code, _, errOut := g.approve(t, g.approver, "approve", "3", "--reason", "validated on the Q3 holdout")
	require.Equal(t, 0, code, errOut)
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	code, stdout, errOut := runCLI(t, "audit", "export", "--store", g.path, "--out", out)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "exported 5 entries")
	i := strings.Index(stdout, "head ")
	require.Positive(t, i)
	head := strings.TrimSpace(stdout[i+len("head "):])

	code, stdout, errOut = runCLI(t, "audit", "verify", "--log", out, "--head", head, "--tls-ca", g.caPath)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "the chain and the expected head intact")
	assert.Contains(t, stdout, "1 decisions signed")

	code, _, errOut = runCLI(t, "audit", "export", "--store", g.path, "--out", out)
	assert.Equal(t, 1, code, "an existing archive is not overwritten")
	assert.Contains(t, errOut, "exists")

	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	edited := bytes.Replace(raw, []byte("Q3"), []byte("Q4"), 1)
	require.NoError(t, os.WriteFile(out, edited, 0o600))
	code, _, errOut = runCLI(t, "audit", "verify", "--log", out, "--tls-ca", g.caPath)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "entry 5")
	assert.Contains(t, errOut, "edited")

	// Deleting the last entry passes on the chain alone, and fails against the recorded head.
	lines := bytes.SplitAfter(raw, []byte("\n"))
	require.NoError(t, os.WriteFile(out, bytes.Join(lines[:4], nil), 0o600))
	code, _, errOut = runCLI(t, "audit", "verify", "--log", out, "--tls-ca", g.caPath)
	assert.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "audit", "verify", "--log", out, "--tls-ca", g.caPath, "--head", head)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "entry 5")
	assert.Contains(t, errOut, "deleted")
}

func TestAuditShow(t *testing.T) {
	g := newGatedStore(t)
	code, _, errOut := g.approve(t, g.approver, "approve", "3", "--reason", "AUC 0.77, within the fairness policy")
	require.Equal(t, 0, code, errOut)
	code, out, errOut := runCLI(t, "audit", "show", "--store", g.path)
	require.Equal(t, 0, code, errOut)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, rows, 6)
	assert.Regexp(t, `^SEQ\s+TIME\s+ACTOR\s+ROLE\s+ACTION`, rows[0])
	assert.Regexp(t, `^5\s+\S+\s+risk-officer\s+approver\s+model.approve\s+version 3\s+AUC 0.77, within the fairness policy\s+yes`, rows[5])

	code, out, errOut = runCLI(t, "audit", "show", "--store", g.path, "--format", "json")
	require.Equal(t, 0, code, errOut)
	entries, err := audit.ReadEntries(context.Background(), strings.NewReader(out))
	require.NoError(t, err, "json output is the log's own encoding")
	require.NoError(t, audit.Verify(entries, nil))
}

// A log without decisions (a simulation's, a run nobody reviewed yet) verifies without the
// CA; once it holds one, the CA is required, since no decision can be told from a forgery
// without it.
func TestAuditVerifyNeedsTheCAOnlyForDecisions(t *testing.T) {
	g := newGatedStore(t)
	code, out, errOut := runCLI(t, "audit", "verify", "--store", g.path, "--tls-ca", "")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "0 decisions")

	code, _, errOut = g.approve(t, g.approver, "approve", "3", "--reason", "AUC 0.77")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "audit", "verify", "--store", g.path, "--tls-ca", "")
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "--tls-ca is required: the log holds 1 approval or rejection decisions")
}

func TestAuditUsage(t *testing.T) {
	g := newGatedStore(t)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad head", []string{"verify", "--store", g.path, "--tls-ca", g.caPath, "--head", "3"}, 2, "--head"},
		{"missing store", []string{"verify", "--store", g.path + ".none", "--tls-ca", g.caPath}, 1, "none"},
		{"missing export", []string{"verify", "--log", g.path + ".none", "--tls-ca", g.caPath}, 1, "none"},
		{"bad format", []string{"show", "--store", g.path, "--format", "xml"}, 2, "--format"},
		{"export without --out", []string{"export", "--store", g.path}, 2, "--out is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"audit"}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
	assert.NoFileExists(t, g.path+".none", "reading a store creates none")
}

func TestTheOldAuditLogKeyIsRefused(t *testing.T) {
	cfg := defaultCoordinatorConfig()
	cfg.AuditLog = "fedprop.db.audit.jsonl"
	err := cfg.validate()
	require.ErrorIs(t, err, coordinator.ErrBadConfig)
	assert.Contains(t, err.Error(), "audit_log: the audit log now lives in the store")
}
