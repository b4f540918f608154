// Package grpctransport adapts fedprop's coordinator and client to the gRPC wire contract in
// proto/fedprop/v1. The proto types stay in this package: the cores see only domain types.
package grpctransport

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// maxBoxes bounds the sealed shares one keygen result may carry (one per other member).
const maxBoxes = 1 << 16

// maxVectorLen bounds a result vector's length before anything is allocated for it.
const maxVectorLen = 1 << 24

func kindToProto(k task.Kind) pb.TaskKind { return pb.TaskKind(k) }

func kindFromProto(k pb.TaskKind) (task.Kind, error) {
	if k <= pb.TaskKind_TASK_KIND_UNSPECIFIED || k > pb.TaskKind_TASK_KIND_DECRYPT {
		return 0, fmt.Errorf("kind: %w: %v is not a task kind", task.ErrInvalid, k)
	}
	return task.Kind(k), nil
}

func taskToProto(t task.Task) *pb.Task {
	out := &pb.Task{
		Id:           t.ID,
		RunId:        t.RunID,
		Round:        int32(t.Round),
		Kind:         kindToProto(t.Kind),
		ModelVersion: t.ModelVersion,
		Weights:      t.Weights,
		Encoding: &pb.Encoding{
			SchemaHash: t.Encoding.SchemaHash,
			Mean:       t.Encoding.Mean,
			Std:        t.Encoding.Std,
		},
		TrainParams: &pb.TrainParams{
			Epochs:       int32(t.Train.Epochs),
			BatchSize:    int32(t.Train.BatchSize),
			LearningRate: t.Train.LearningRate,
			L2:           t.Train.L2,
			ProxMu:       t.Train.ProxMu,
		},
		Seed:          t.Seed,
		HistogramBins: int32(t.HistogramBins),
		MaxUpdateNorm: t.MaxUpdateNorm,
		PublicKey:     t.PublicKey,
		CohortSize:    int32(t.CohortSize),
		StatsScale:    t.StatsScale,
		// This coordinator decodes sparse sums (resultFromProto).
		SparseResults: true,
		ShapSums:      t.SHAPSums,
	}
	if f := t.Fairness; f != nil {
		out.Fairness = &pb.FairnessSpec{Thresholds: f.Thresholds, Bins: int32(f.Bins)}
		for _, a := range sortedKeys(f.Groups) {
			out.Fairness.Groups = append(out.Fairness.Groups, &pb.AttributeGroups{Attribute: a, Groups: f.Groups[a]})
		}
	}
	out.Dp, out.ReleaseNoise = dpToProto(t.DP), noiseToProto(t.Noise)
	if k := t.KeyInfo; k != nil {
		out.CollectiveKey = &pb.CollectiveKey{SetupId: k.SetupID, Threshold: int32(k.Threshold), Members: k.Members}
		for i := range k.Endorsements {
			out.CollectiveKey.Endorsements = append(out.CollectiveKey.Endorsements, endorsementToProto(&k.Endorsements[i]))
		}
	}
	if k := t.Keygen; k != nil {
		out.Keygen = &pb.KeygenSpec{SetupId: k.SetupID, Step: int32(k.Step), Index: int32(k.Index), Threshold: int32(k.Threshold),
			CrsSeed: k.CRSSeed, Boxes: boxesToProto(k.Boxes), PublicKeyShares: k.PublicKeyShares, Parameters: k.Parameters}
		for _, m := range k.Members {
			out.Keygen.Members = append(out.Keygen.Members, &pb.CommitteeMember{ClientId: m.ClientID, Index: int32(m.Index), IdentityKey: m.IdentityKey,
				Endorsement: endorsementToProto(m.Endorsement), PublicKeyShareDigest: m.PublicKeyShareDigest})
		}
	}
	if d := t.Decrypt; d != nil {
		out.Decrypt = &pb.DecryptSpec{Purpose: kindToProto(d.Purpose), AggregateRound: int32(d.AggregateRound), Contributors: int32(d.Contributors),
			Aggregate: d.Aggregate, Active: toInt32s(d.Active), Dp: dpToProto(d.DP), ReleaseNoise: noiseToProto(d.Noise),
			Contributions: contributionsToProto(d.Contributions)}
	}
	if !t.Deadline.IsZero() {
		out.DeadlineUnixMillis = t.Deadline.UnixMilli()
	}
	// The coordinator's own values: they marshal (no NaN in a validated model or spec).
	if t.GBDT != nil {
		out.GbdtStep, _ = json.Marshal(t.GBDT)
	}
	if t.Trees != nil {
		out.Trees, _ = json.Marshal(t.Trees)
	}
	return out
}

func taskFromProto(p *pb.Task) (task.Task, error) {
	kind, err := kindFromProto(p.GetKind())
	if err != nil {
		return task.Task{}, err
	}
	t := task.Task{
		ID:           p.GetId(),
		RunID:        p.GetRunId(),
		Round:        int(p.GetRound()),
		Kind:         kind,
		ModelVersion: p.GetModelVersion(),
		Weights:      p.GetWeights(),
		Encoding: task.Encoding{
			SchemaHash: p.GetEncoding().GetSchemaHash(),
			Mean:       p.GetEncoding().GetMean(),
			Std:        p.GetEncoding().GetStd(),
		},
		Train: logreg.Params{
			Epochs:       int(p.GetTrainParams().GetEpochs()),
			BatchSize:    int(p.GetTrainParams().GetBatchSize()),
			LearningRate: p.GetTrainParams().GetLearningRate(),
			L2:           p.GetTrainParams().GetL2(),
			ProxMu:       p.GetTrainParams().GetProxMu(),
		},
		Seed:          p.GetSeed(),
		HistogramBins: int(p.GetHistogramBins()),
		MaxUpdateNorm: p.GetMaxUpdateNorm(),
		PublicKey:     p.GetPublicKey(),
		CohortSize:    int(p.GetCohortSize()),
		StatsScale:    p.GetStatsScale(),
		SHAPSums:      p.GetShapSums(),
	}
	if f := p.GetFairness(); f != nil {
		t.Fairness = &task.FairnessSpec{Thresholds: f.GetThresholds(), Bins: int(f.GetBins())}
		for _, g := range f.GetGroups() {
			if t.Fairness.Groups == nil {
				t.Fairness.Groups = map[string][]string{}
			}
			t.Fairness.Groups[g.GetAttribute()] = g.GetGroups()
		}
	}
	t.DP, t.Noise = dpFromProto(p.GetDp()), noiseFromProto(p.GetReleaseNoise())
	if k := p.GetCollectiveKey(); k != nil {
		t.KeyInfo = &task.CollectiveKey{SetupID: k.GetSetupId(), Threshold: int(k.GetThreshold()), Members: k.GetMembers()}
		for _, e := range k.GetEndorsements() {
			t.KeyInfo.Endorsements = append(t.KeyInfo.Endorsements, *endorsementFromProto(e))
		}
	}
	if k := p.GetKeygen(); k != nil {
		t.Keygen = &task.KeygenSpec{SetupID: k.GetSetupId(), Step: int(k.GetStep()), Index: int(k.GetIndex()), Threshold: int(k.GetThreshold()),
			CRSSeed: k.GetCrsSeed(), Boxes: boxesFromProto(k.GetBoxes()), PublicKeyShares: k.GetPublicKeyShares(), Parameters: k.GetParameters()}
		for _, m := range k.GetMembers() {
			t.Keygen.Members = append(t.Keygen.Members, task.CommitteeMember{ClientID: m.GetClientId(), Index: int(m.GetIndex()), IdentityKey: m.GetIdentityKey(),
				Endorsement: endorsementFromProto(m.GetEndorsement()), PublicKeyShareDigest: m.GetPublicKeyShareDigest()})
		}
	}
	if d := p.GetDecrypt(); d != nil {
		purpose, err := kindFromProto(d.GetPurpose())
		if err != nil {
			return task.Task{}, fmt.Errorf("decrypt.purpose: %w", err)
		}
		t.Decrypt = &task.DecryptSpec{Purpose: purpose, AggregateRound: int(d.GetAggregateRound()), Contributors: int(d.GetContributors()),
			Aggregate: d.GetAggregate(), Active: fromInt32s(d.GetActive()), DP: dpFromProto(d.GetDp()), Noise: noiseFromProto(d.GetReleaseNoise()),
			Contributions: contributionsFromProto(d.GetContributions())}
	}
	if ms := p.GetDeadlineUnixMillis(); ms != 0 {
		t.Deadline = time.UnixMilli(ms)
	}
	if b := p.GetGbdtStep(); len(b) > 0 {
		if t.GBDT, err = task.DecodeGBDTSpec(b); err != nil {
			return task.Task{}, fmt.Errorf("gbdt_step: %w", err)
		}
	}
	if b := p.GetTrees(); len(b) > 0 {
		m, err := gbdt.DecodeModel(b)
		if err != nil {
			return task.Task{}, fmt.Errorf("trees: %w: %w", task.ErrInvalid, err)
		}
		t.Trees = m
	}
	return t, nil
}

func dpToProto(d *task.DPSpec) *pb.DPSpec {
	if d == nil {
		return nil
	}
	return &pb.DPSpec{Mechanism: d.Mechanism, ClipNorm: d.ClipNorm, IndicatorNoiseStd: d.IndicatorNoiseStd,
		SamplingRate: d.SamplingRate, Steps: int32(d.Steps), NoiseMultiplier: d.NoiseMultiplier, Delta: d.Delta,
		ExpectedContributors: int32(d.ExpectedContributors), ReferenceRecords: int32(d.ReferenceRecords)}
}

func dpFromProto(d *pb.DPSpec) *task.DPSpec {
	if d == nil {
		return nil
	}
	return &task.DPSpec{Mechanism: d.GetMechanism(), ClipNorm: d.GetClipNorm(), IndicatorNoiseStd: d.GetIndicatorNoiseStd(),
		SamplingRate: d.GetSamplingRate(), Steps: int(d.GetSteps()), NoiseMultiplier: d.GetNoiseMultiplier(), Delta: d.GetDelta(),
		ExpectedContributors: int(d.GetExpectedContributors()), ReferenceRecords: int(d.GetReferenceRecords())}
}

func noiseToProto(n *task.ReleaseNoise) *pb.ReleaseNoise {
	if n == nil {
		return nil
	}
	return &pb.ReleaseNoise{NoiseMultiplier: n.NoiseMultiplier, ExpectedContributors: int32(n.ExpectedContributors), Delta: n.Delta, Level: n.Level}
}

func noiseFromProto(n *pb.ReleaseNoise) *task.ReleaseNoise {
	if n == nil {
		return nil
	}
	return &task.ReleaseNoise{NoiseMultiplier: n.GetNoiseMultiplier(), ExpectedContributors: int(n.GetExpectedContributors()), Delta: n.GetDelta(), Level: n.GetLevel()}
}

// resultToProto encodes a result; with sparse set, a plaintext sum that is mostly zeros goes
// in sparse form (only to a coordinator that said it decodes it).
func resultToProto(r task.Result, sparse bool) *pb.SubmitResultRequest {
	out := &pb.SubmitResultRequest{
		ClientId: r.ClientID,
		TaskId:   r.TaskID,
		RunId:    r.RunID,
		Round:    int32(r.Round),
		Kind:     kindToProto(r.Kind),
		Sum: &pb.AggregateVector{
			Plain:      r.Sum.Plain,
			Ciphertext: r.Sum.Ciphertext,
			Length:     int32(r.Sum.Length),
		},
		PublicKeyShare:  r.PublicKeyShare,
		Boxes:           boxesToProto(r.Boxes),
		DecryptionShare: r.DecryptionShare,
		Refusal:         r.Refusal,
		Endorsement:     endorsementToProto(r.Endorsement),
	}
	if r.Refusal != "" {
		out.Sum = nil
	}
	if out.Sum == nil || r.Sum.Ciphertext != nil {
		return out
	}
	if r.Sum.Index != nil { // sparse already
		out.Sum = &pb.AggregateVector{Length: int32(r.Sum.Length), SparseIndex: r.Sum.Index, SparseValue: r.Sum.Plain}
	} else if sparse {
		if index, values, ok := sparseEncode(r.Sum.Plain); ok {
			out.Sum = &pb.AggregateVector{Length: int32(len(r.Sum.Plain)), SparseIndex: index, SparseValue: values}
		}
	}
	return out
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func boxesToProto(in []task.SealedShare) []*pb.SealedShare {
	out := make([]*pb.SealedShare, len(in))
	for i, b := range in {
		out[i] = &pb.SealedShare{From: int32(b.From), To: int32(b.To), Box: b.Box}
	}
	return out
}

func boxesFromProto(in []*pb.SealedShare) []task.SealedShare {
	out := make([]task.SealedShare, len(in))
	for i, b := range in {
		out[i] = task.SealedShare{From: int(b.GetFrom()), To: int(b.GetTo()), Box: b.GetBox()}
	}
	return out
}

func toInt32s(in []int) []int32 {
	out := make([]int32, len(in))
	for i, v := range in {
		out[i] = int32(v)
	}
	return out
}

func fromInt32s(in []int32) []int {
	out := make([]int, len(in))
	for i, v := range in {
		out[i] = int(v)
	}
	return out
}

// resultFromProto checks the fields of a submission that can be checked without the run's
// state; the core checks the rest.
func resultFromProto(p *pb.SubmitResultRequest) (task.Result, error) {
	bad := func(field string, err error) error {
		return &coordinator.ProtocolError{Client: p.GetClientId(), Run: p.GetRunId(), Round: int(p.GetRound()), Field: field, Err: err}
	}
	if p.GetClientId() == "" {
		return task.Result{}, bad("client_id", fmt.Errorf("%w: empty", task.ErrInvalid))
	}
	if p.GetTaskId() == "" {
		return task.Result{}, bad("task_id", fmt.Errorf("%w: empty", task.ErrInvalid))
	}
	kind, err := kindFromProto(p.GetKind())
	if err != nil {
		return task.Result{}, bad("kind", err)
	}
	committee := kind == task.KindKeygen || kind == task.KindDecrypt
	sum := p.GetSum()
	if p.GetRefusal() != "" {
		// A refusal carries a reason and nothing else.
		if sum != nil || len(p.GetPublicKeyShare()) > 0 || len(p.GetBoxes()) > 0 || len(p.GetDecryptionShare()) > 0 {
			return task.Result{}, bad("refusal", fmt.Errorf("%w: a refusal carries no result", task.ErrInvalid))
		}
		return task.Result{ClientID: p.GetClientId(), TaskID: p.GetTaskId(), RunID: p.GetRunId(), Round: int(p.GetRound()), Kind: kind,
			Refusal: p.GetRefusal()}, nil
	}
	if sum == nil && !committee {
		return task.Result{}, bad("sum", fmt.Errorf("%w: missing", task.ErrInvalid))
	}
	if len(p.GetBoxes()) > maxBoxes {
		return task.Result{}, bad("boxes", fmt.Errorf("%w: %d sealed shares, at most %d", task.ErrInvalid, len(p.GetBoxes()), maxBoxes))
	}
	if len(sum.GetPlain()) > 0 && len(sum.GetCiphertext()) > 0 {
		return task.Result{}, bad("sum", fmt.Errorf("%w: both plaintext and ciphertext set", task.ErrInvalid))
	}
	sparse := len(sum.GetSparseIndex()) > 0 || len(sum.GetSparseValue()) > 0
	if sparse && (len(sum.GetPlain()) > 0 || len(sum.GetCiphertext()) > 0) {
		return task.Result{}, bad("sum", fmt.Errorf("%w: sparse values set together with plain or ciphertext ones", task.ErrInvalid))
	}
	if len(sum.GetPlain()) > maxVectorLen || sum.GetLength() < 0 || sum.GetLength() > maxVectorLen {
		return task.Result{}, bad("sum", fmt.Errorf("%w: too long", task.ErrInvalid))
	}
	v := task.Vector{Plain: sum.GetPlain(), Length: int(sum.GetLength())}
	if sparse {
		// Kept sparse: the core adds the values where they belong, and only a sparse
		// result's few values ever exist here, however many clients submit at once.
		if err := checkSparse(int(sum.GetLength()), sum.GetSparseIndex(), sum.GetSparseValue()); err != nil {
			return task.Result{}, bad("sum.sparse_index", fmt.Errorf("%w: %w", task.ErrInvalid, err))
		}
		v.Plain, v.Index = sum.GetSparseValue(), sum.GetSparseIndex()
	}
	if len(sum.GetCiphertext()) > 0 {
		v.Ciphertext = sum.GetCiphertext()
	}
	return task.Result{
		ClientID:        p.GetClientId(),
		TaskID:          p.GetTaskId(),
		RunID:           p.GetRunId(),
		Round:           int(p.GetRound()),
		Kind:            kind,
		Sum:             v,
		PublicKeyShare:  p.GetPublicKeyShare(),
		Boxes:           boxesFromProto(p.GetBoxes()),
		DecryptionShare: p.GetDecryptionShare(),
		Endorsement:     endorsementFromProto(p.GetEndorsement()),
	}, nil
}

func endorsementToProto(e *task.Endorsement) *pb.Endorsement {
	if e == nil {
		return nil
	}
	return &pb.Endorsement{Certificate: e.Certificate, Signature: e.Signature}
}

func endorsementFromProto(e *pb.Endorsement) *task.Endorsement {
	if e == nil {
		return nil
	}
	return &task.Endorsement{Certificate: e.GetCertificate(), Signature: e.GetSignature()}
}

// toStatus maps domain errors to gRPC status codes, keeping the message that names the field.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var code codes.Code
	switch {
	case errors.Is(err, task.ErrUnknownClient):
		code = codes.FailedPrecondition
	case errors.Is(err, task.ErrStale), errors.Is(err, task.ErrTooFewRecords):
		code = codes.FailedPrecondition
	case errors.Is(err, task.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, coordinator.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, coordinator.ErrRunActive), errors.Is(err, coordinator.ErrConflict):
		code = codes.AlreadyExists
	case errors.Is(err, coordinator.ErrBadConfig):
		code = codes.InvalidArgument
	case errors.Is(err, coordinator.ErrStopped):
		code = codes.Unavailable
	case errors.Is(err, coordinator.ErrNotApproved), errors.Is(err, coordinator.ErrFlagged), errors.Is(err, coordinator.ErrReviewed),
		errors.Is(err, coordinator.ErrNoCA):
		code = codes.FailedPrecondition
	case errors.Is(err, coordinator.ErrBadSignature):
		code = codes.PermissionDenied
	case errors.Is(err, coordinator.ErrCorrupt):
		code = codes.DataLoss
	default:
		if s, ok := status.FromError(err); ok {
			return s.Err()
		}
		code = codes.Internal
	}
	st := status.New(code, err.Error())
	for _, r := range sentinelReasons {
		if errors.Is(err, r.err) {
			// The sentinel travels as a detail, not in the message: a message may quote a
			// client's or a file's words, and no word of it is read back as a sentinel.
			if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: r.reason, Domain: errorDomain}); derr == nil {
				st = withInfo
			}
			break
		}
	}
	return st.Err()
}

// errorDomain is the ErrorInfo domain of fedprop's protocol errors.
const errorDomain = "fedprop.v1"

// sentinelReasons names the protocol sentinels a status carries as an ErrorInfo detail, so
// that the client restores them for errors.Is. The first that the error wraps is sent: a
// decision that does not verify is also invalid, and goes as the more precise one.
var sentinelReasons = []struct {
	reason string
	err    error
}{
	{"UNKNOWN_CLIENT", task.ErrUnknownClient},
	{"STALE", task.ErrStale},
	{"INVALID_DECISION", coordinator.ErrInvalidDecision},
	{"NOT_APPROVED", coordinator.ErrNotApproved},
	{"FLAGGED", coordinator.ErrFlagged},
	{"REVIEWED", coordinator.ErrReviewed},
	{"NO_CA", coordinator.ErrNoCA},
	{"INVALID", task.ErrInvalid},
	{"TOO_FEW_RECORDS", task.ErrTooFewRecords},
}

// fromStatus restores the protocol sentinels on the client side so errors.Is works there.
func fromStatus(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range s.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		for _, r := range sentinelReasons {
			if r.reason == info.GetReason() {
				return fmt.Errorf("%w (%s)", r.err, s.Message())
			}
		}
	}
	switch s.Code() {
	case codes.NotFound:
		return fmt.Errorf("%w (%s)", coordinator.ErrNotFound, s.Message())
	}
	return err
}
