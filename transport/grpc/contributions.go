package grpctransport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// ContributionChunkSize is the most ciphertext one ContributionChunk carries: a quarter of
// gRPC's default 4 MiB message limit, so that contributions of any length stream.
const ContributionChunkSize = 1 << 20

// maxContributionBytes bounds one contribution a member assembles, whatever size it asks
// for: the largest vector a result may carry, encrypted (about 8 bytes of ciphertext per
// value, doubled for slack).
const maxContributionBytes = 16 * maxVectorLen

func contributionsToProto(in []task.Contribution) []*pb.Contribution {
	if len(in) == 0 {
		return nil
	}
	out := make([]*pb.Contribution, len(in))
	for i, c := range in {
		out[i] = &pb.Contribution{ClientId: c.ClientID, Digest: c.Digest, Endorsement: endorsementToProto(c.Endorsement)}
	}
	return out
}

func contributionsFromProto(in []*pb.Contribution) []task.Contribution {
	if len(in) == 0 {
		return nil
	}
	out := make([]task.Contribution, len(in))
	for i, c := range in {
		out[i] = task.Contribution{ClientID: c.GetClientId(), Digest: c.GetDigest(), Endorsement: endorsementFromProto(c.GetEndorsement())}
	}
	return out
}

// contributionQueryFromProto checks a FetchContributions request's fields.
func contributionQueryFromProto(r *pb.FetchContributionsRequest) (task.ContributionQuery, error) {
	client, run, round := r.GetClientId(), r.GetRunId(), int(r.GetRound())
	if err := checkClientID(client, run, round); err != nil {
		return task.ContributionQuery{}, err
	}
	if err := checkText(client, run, round, "run_id", run, maxRunIDLen); err != nil {
		return task.ContributionQuery{}, err
	}
	if round < 0 {
		return task.ContributionQuery{}, fieldError(client, run, round, "round", "must not be negative, got %d", round)
	}
	purpose, err := kindFromProto(r.GetPurpose())
	if err != nil || (purpose != task.KindStats && purpose != task.KindTrain && purpose != task.KindEvaluate) {
		return task.ContributionQuery{}, fieldError(client, run, round, "purpose", "%v is not stats, train or evaluate", r.GetPurpose())
	}
	d := r.GetAggregateSha256()
	if b, err := hex.DecodeString(d); err != nil || len(b) != sha256.Size {
		return task.ContributionQuery{}, fieldError(client, run, round, "aggregate_sha256", "not a hex SHA-256")
	}
	return task.ContributionQuery{ClientID: client, RunID: run, Round: round, Purpose: purpose, AggregateDigest: d}, nil
}

// FetchContributions implements pb.ClientServiceServer: the ciphertexts of the aggregate the
// calling member was asked to help decrypt, in the decrypt task's order, each in chunks of at
// most ContributionChunkSize.
func (s *clientService) FetchContributions(req *pb.FetchContributionsRequest, stream pb.ClientService_FetchContributionsServer) error {
	q, err := contributionQueryFromProto(req)
	if err != nil {
		return toStatus(err)
	}
	cts, err := s.srv.Contributions(stream.Context(), q)
	if err != nil {
		return toStatus(err)
	}
	for i, ct := range cts {
		for off := 0; ; off += ContributionChunkSize {
			end := min(off+ContributionChunkSize, len(ct))
			if err := stream.Send(&pb.ContributionChunk{Index: int32(i), Data: ct[off:end], TotalBytes: int64(len(ct))}); err != nil {
				return err
			}
			if end == len(ct) {
				break
			}
		}
	}
	return nil
}

// FetchContributions implements client.ContributionSource over the client service: it
// reassembles each contribution from its chunks (chunkAssembler) and hands it to each, whose
// slice is valid only during the call.
func (c *Client) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(index int, ciphertext []byte) error) error {
	ctx, cancel := context.WithCancel(ctx) // an early return stops the coordinator's stream
	defer cancel()
	stream, err := c.rpc.FetchContributions(ctx, &pb.FetchContributionsRequest{ClientId: q.ClientID, RunId: q.RunID, Round: int32(q.Round),
		Purpose: kindToProto(q.Purpose), AggregateSha256: q.AggregateDigest})
	if err != nil {
		return fromStatus(err)
	}
	a, err := newChunkAssembler(size)
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return a.finish()
		}
		if err != nil {
			return fromStatus(err)
		}
		index, ct, err := a.add(int(chunk.GetIndex()), chunk.GetData(), chunk.GetTotalBytes())
		if err != nil {
			return err
		}
		if ct != nil {
			if err := each(index, ct); err != nil {
				return err
			}
		}
	}
}

// chunkAssembler rebuilds contributions from a FetchContributions stream: indices 0, 1, 2...
// in order, each contribution exactly size bytes in consecutive non-empty chunks. It keeps
// one contribution's buffer, reused for the next.
type chunkAssembler struct {
	size int
	next int
	buf  []byte
}

func newChunkAssembler(size int) (*chunkAssembler, error) {
	if size < 1 || size > maxContributionBytes {
		return nil, fmt.Errorf("%w: contributions of %d bytes, want 1..%d", task.ErrInvalid, size, maxContributionBytes)
	}
	return &chunkAssembler{size: size}, nil
}

// add takes one chunk; when it completes a contribution it returns its index and bytes
// (valid until the next call), else a nil slice.
func (a *chunkAssembler) add(index int, data []byte, total int64) (int, []byte, error) {
	switch {
	case index != a.next:
		return 0, nil, fmt.Errorf("%w: a chunk of contribution %d, expected contribution %d", task.ErrInvalid, index, a.next)
	case total != int64(a.size):
		return 0, nil, fmt.Errorf("%w: contribution %d of %d bytes, the aggregate's contributions have %d", task.ErrInvalid, index, total, a.size)
	case len(data) == 0 || len(a.buf)+len(data) > a.size:
		return 0, nil, fmt.Errorf("%w: contribution %d: a chunk of %d bytes after %d of %d", task.ErrInvalid, index, len(data), len(a.buf), a.size)
	}
	if a.buf == nil {
		a.buf = make([]byte, 0, a.size)
	}
	a.buf = append(a.buf, data...)
	if len(a.buf) < a.size {
		return index, nil, nil
	}
	ct := a.buf
	a.buf = a.buf[:0]
	a.next++
	return index, ct, nil
}

// finish reports a stream that ended in the middle of a contribution.
func (a *chunkAssembler) finish() error {
	if len(a.buf) > 0 {
		return fmt.Errorf("%w: the stream ended %d bytes into contribution %d", task.ErrInvalid, len(a.buf), a.next)
	}
	return nil
}

// checkContributionSignature refuses, over mutual TLS, an encrypted result that does not
// carry its caller's own signature over the ciphertext (task.ContributionStatement):
// committee members would refuse every aggregate it joined, so one client could stall a
// round. Without TLS callers have no certificate and nothing is checked here; members that
// verify still refuse unsigned contributions.
func checkContributionSignature(ctx context.Context, req any) error {
	r, ok := req.(*pb.SubmitResultRequest)
	sum := r.GetSum()
	if !ok || len(sum.GetCiphertext()) == 0 || sum.GetLength() <= 0 || len(sum.GetPlain()) > 0 || len(sum.GetSparseIndex()) > 0 ||
		len(sum.GetSparseValue()) > 0 || r.GetRefusal() != "" {
		return nil // not an encrypted result, or a malformed one resultFromProto names
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	client, run, round := r.GetClientId(), r.GetRunId(), int(r.GetRound())
	kind, err := kindFromProto(r.GetKind())
	if err != nil {
		return nil // resultFromProto names it
	}
	e := r.GetEndorsement()
	if e == nil {
		return toStatus(fieldError(client, run, round, "endorsement", "an encrypted result over mutual TLS must carry the client's signature over its ciphertext"))
	}
	digest := sha256.Sum256(r.GetSum().GetCiphertext())
	signed := pki.Signed{Certificate: e.GetCertificate(), Signature: e.GetSignature()}
	if err := pki.VerifyByPeer(info.State.PeerCertificates[0], signed, task.ContributionDomain, task.ContributionStatement(run, round, kind, digest[:])...); err != nil {
		return toStatus(fieldError(client, run, round, "endorsement", "%v", err))
	}
	return nil
}
