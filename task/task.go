// Package task holds the domain types of fedprop's client-initiated task protocol: the tasks a
// coordinator hands out and the results clients return. The coordinator and client cores speak
// only these types; transport/grpc translates them to and from the wire contract in proto/.
//
// Every result is a sum (a Vector) so that one secure-aggregation mechanism protects every
// quantity: the weighted training update, the feature statistics and the evaluation counts.
package task

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// Kind names what a task asks of a client.
type Kind int

// The task kinds of DESIGN.md. Keygen and Decrypt serve secure aggregation.
const (
	KindUnspecified Kind = iota
	KindStats
	KindTrain
	KindEvaluate
	KindKeygen
	KindDecrypt
)

var kindNames = [...]string{"unspecified", "stats", "train", "evaluate", "keygen", "decrypt"}

// String returns the kind's lower-case name as it appears in logs and configuration.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Encoding pins how records become model inputs: the schema every participant must use
// (by hash) and the federated standardisation of the numeric features.
type Encoding struct {
	SchemaHash string
	Mean, Std  []float64
}

// Task is one unit of work for one client.
type Task struct {
	ID       string
	RunID    string
	Round    int
	Kind     Kind
	Deadline time.Time // wall clock, set by the driver; zero in the simulator

	ModelVersion  uint64
	Weights       []float64
	Encoding      Encoding
	Train         logreg.Params
	Seed          uint64
	HistogramBins int
	// MaxUpdateNorm is the L2 norm a train task's unweighted update is clipped to in a run
	// without differential privacy (0: none); the coordinator refuses a result above it.
	MaxUpdateNorm float64

	// PublicKey is the committee's collective public key: when set, every sum is returned
	// encrypted under it. KeyInfo names the setup that made it, with its endorsements.
	PublicKey []byte
	KeyInfo   *CollectiveKey
	// CohortSize is how many clients were asked in this phase: an encrypted sum adds at most
	// this many results, so each bounds its values to the ciphertext range divided by it.
	CohortSize int
	// StatsScale multiplies every value a stats task sums (its square by StatsScale²), so that
	// the sums of squares of raw features over a million records stay inside the ciphertext
	// range; the coordinator divides it out. Zero means 1.
	StatsScale float64
	// Fairness is the layout of the per-group sums an evaluate task also returns (nil: none).
	Fairness *FairnessSpec
	// DP is the differential privacy to apply to a train task (nil: none).
	DP *DPSpec
	// Noise is the differential privacy of a stats or evaluate task (nil: none).
	Noise   *ReleaseNoise
	Keygen  *KeygenSpec
	Decrypt *DecryptSpec
	// GBDT is the tree part of a train task of a gradient-boosted-trees run (nil otherwise).
	GBDT *GBDTSpec
	// Trees is the model an evaluate task of a tree run scores (Weights is then empty).
	Trees *gbdt.Model
	// SHAPSums asks an evaluate task of a tree run to append the model's |TreeSHAP| sums over
	// the client's evaluation rows (gbdt.AbsSHAPSums: the row count, then one sum per feature
	// in Trees.Features order) to its result, for the model's global importance. A flag, not
	// a rule the client infers from the model, so that neither side lengthens the vector
	// unless the other reads the longer one.
	SHAPSums bool
}

// Vector is a summable quantity: plaintext values, or a ciphertext of Length values.
type Vector struct {
	Plain []float64
	// Index, when not nil, makes a plaintext vector sparse: Plain[k] is its value at position
	// Index[k] (strictly increasing, each below Length) and every other position holds 0. A
	// coordinator receives an evaluation result this way (a small client fills a few dozen of
	// its thousands of histogram bins) and adds it without ever spelling out its zeros.
	Index      []uint32
	Ciphertext []byte
	Length     int
}

// ErrSparse marks a sparse vector whose indices are out of order, beyond its length, or not
// one per value.
var ErrSparse = errors.New("invalid sparse vector")

// Len is the number of values the vector carries.
func (v Vector) Len() int {
	if v.Ciphertext != nil || v.Index != nil {
		return v.Length
	}
	return len(v.Plain)
}

// Bytes is the payload size on the wire, for the client's log and the simulator's accounting.
func (v Vector) Bytes() int {
	switch {
	case v.Ciphertext != nil:
		return len(v.Ciphertext)
	case v.Index != nil:
		return 12 * len(v.Plain)
	}
	return 8 * len(v.Plain)
}

// CheckFinite reports the first NaN or infinite plaintext value.
func (v Vector) CheckFinite() error {
	for k, x := range v.Plain {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			i := k
			if v.Index != nil && k < len(v.Index) {
				i = int(v.Index[k])
			}
			return fmt.Errorf("value %d is %v", i, x)
		}
	}
	return nil
}

// AddTo adds the plaintext vector into dst, which must have its length: the sum that
// aggregation needs, and, into zeros, its plain form. A sparse vector touches only its listed
// positions; one whose indices do not fit (ErrSparse), or a vector of another length, leaves
// dst unchanged and returns an error.
func (v Vector) AddTo(dst []float64) error {
	if v.Ciphertext != nil {
		return errors.New("add vector: an encrypted vector has no plaintext to add")
	}
	if v.Len() != len(dst) {
		return fmt.Errorf("add vector: length %d, want %d", v.Len(), len(dst))
	}
	if v.Index == nil {
		for i, x := range v.Plain {
			dst[i] += x
		}
		return nil
	}
	if len(v.Index) != len(v.Plain) {
		return fmt.Errorf("add vector: %w: %d indices for %d values", ErrSparse, len(v.Index), len(v.Plain))
	}
	for k, i := range v.Index {
		if int64(i) >= int64(len(dst)) || k > 0 && i <= v.Index[k-1] {
			return fmt.Errorf("add vector: %w: index %d (entry %d) is not above the previous one and below the length %d", ErrSparse, i, k, len(dst))
		}
	}
	for k, i := range v.Index {
		dst[i] += v.Plain[k]
	}
	return nil
}

// Result is a client's answer to a task.
type Result struct {
	ClientID string
	TaskID   string
	RunID    string
	Round    int
	Kind     Kind
	Sum      Vector

	// PublicKeyShare answers keygen step 1, Boxes step 2.
	PublicKeyShare []byte
	Boxes          []SealedShare
	// DecryptionShare answers a decrypt task.
	DecryptionShare []byte
	// Endorsement answers keygen step 1 with the member's signature over its identity key and
	// public-key share, and step 3 with its signature over the collective key; an encrypted
	// stats, train or evaluate result with the client's signature over its ciphertext
	// (ContributionStatement). Nil where parties have no certificates.
	Endorsement *Endorsement
	// Refusal, when set, says why the client declined the task (its privacy floor, for
	// example); such a result carries no sum and counts for nothing.
	Refusal string
}

// MaxRefusalLen bounds the reason a refusal carries on the wire.
const MaxRefusalLen = 1024

// Layout of the train result vector: the example count n, then n*delta for each weight, then
// n*loss. Keeping the count inside the vector means it is protected like the update.
const (
	TrainCountIndex = 0
	TrainDeltaStart = 1
)

// TrainVectorLen is the length of a train result vector for a model of dim weights.
func TrainVectorLen(dim int) int { return dim + 2 }

// SchemaHash identifies a schema by its content, not its formatting: every participant of a
// run must hold a schema with the same hash.
func SchemaHash(s *dataset.Schema) string {
	c := *s
	// An empty list and an absent one say the same (`exclude: []` or no exclude at all):
	// both hash as absent. Lists with entries hash as they always have.
	nilEmpty(reflect.ValueOf(&c).Elem())
	b, err := json.Marshal(&c)
	if err != nil {
		// A Schema is plain data; Marshal cannot fail on it.
		panic(fmt.Sprintf("task: marshal schema: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// nilEmpty sets every empty slice and map reachable from v (addressable) to nil, copying any
// slice or pointer it changes below, so that the value v was copied from is left as it was.
func nilEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				nilEmpty(f)
			}
		}
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		p := reflect.New(v.Elem().Type())
		p.Elem().Set(v.Elem())
		nilEmpty(p.Elem())
		v.Set(p)
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		switch v.Type().Elem().Kind() {
		case reflect.Struct, reflect.Pointer, reflect.Slice, reflect.Map:
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(c, v)
			for i := range c.Len() {
				nilEmpty(c.Index(i))
			}
			v.Set(c)
		}
	case reflect.Map:
		if !v.IsNil() && v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// Protocol errors shared by both sides of the wire. Transports map them to and from status
// codes so that errors.Is works on the client too.
var (
	// ErrUnknownClient: a call from a client that has not registered (or that a restarted
	// coordinator does not know yet).
	ErrUnknownClient = errors.New("unknown client: register first")
	// ErrStale: a result for a task that is not outstanding: another run or round, past its
	// deadline, or never issued to this client.
	ErrStale = errors.New("stale or unknown task")
	// ErrInvalid: a result or request whose content is malformed.
	ErrInvalid = errors.New("invalid request")
	// ErrTooFewRecords: a registration refused because the client holds fewer records than a
	// plaintext run's min_records_plaintext; secure aggregation is the fix.
	ErrTooFewRecords = errors.New("too few records for plaintext aggregation")
)

// DefaultMinRecordsPlaintext is the fewest consenting training records a client must hold to
// take part in a run that aggregates in plaintext, unless the run or the client opts out.
const DefaultMinRecordsPlaintext = 100

// Registration is what a client announces when it registers.
type Registration struct {
	ClientID        string
	SoftwareVersion string
	IdentityKey     []byte
	// TrainRecords is the client's count of consenting training records, which a coordinator
	// aggregating in plaintext checks against its min_records_plaintext.
	TrainRecords int
}

// CommitteeMember is one member of the decryption committee: its client, its Shamir point
// (1..N, never 0) and its X25519 identity key, registered when it enrolled.
type CommitteeMember struct {
	ClientID    string `json:"client_id"`
	Index       int    `json:"index"`
	IdentityKey []byte `json:"identity_key"`
	// Endorsement is the member's own signature over its identity key and public-key share
	// for the setup (nil where members have no certificates), and PublicKeyShareDigest the
	// SHA-256 of that share, both relayed as the member sent them.
	Endorsement          *Endorsement `json:"endorsement,omitempty"`
	PublicKeyShareDigest []byte       `json:"public_key_share_digest,omitempty"`
}

// Endorsement is a party's signature, by the key of its own certificate, over a statement the
// coordinator relays but cannot make.
type Endorsement struct {
	Certificate []byte `json:"certificate"`
	Signature   []byte `json:"signature"`
}

// SealedShare is a Shamir share of member From's secret sealed for member To; the coordinator
// relays it and cannot open it.
type SealedShare struct {
	From, To int
	Box      []byte
}

// Keygen steps of a committee setup.
const (
	KeygenPublicKey = 1 // send a share of the collective public key
	KeygenShares    = 2 // send sealed threshold shares for the other members
	KeygenCombine   = 3 // open and combine the shares addressed to this member
)

// KeygenSpec is what a keygen task asks of a committee member.
type KeygenSpec struct {
	SetupID   string
	Step      int
	Index     int
	Threshold int
	CRSSeed   []byte
	Members   []CommitteeMember
	Boxes     []SealedShare
	// PublicKeyShares are every member's step-1 shares in point order (step 3), from which
	// members compute the collective key they endorse.
	PublicKeyShares [][]byte
	// Parameters names the secure-aggregation parameter set (secagg.PresetLiteral) the
	// committee's key is made under; empty means the default. A member makes its key share
	// only under a set its own configuration accepts.
	Parameters string
}

// CollectiveKey says which committee setup made a task's public key, with the members'
// endorsements of it: a client that pinned its committee encrypts only under a key that at
// least Threshold of those members endorsed.
type CollectiveKey struct {
	SetupID   string
	Threshold int
	// Members are the committee's client ids in point order.
	Members      []string
	Endorsements []Endorsement
}

// DecryptSpec is what a decrypt task asks a committee member to help decrypt. Members check
// it before they answer: see client.Member.
type DecryptSpec struct {
	Purpose        Kind
	AggregateRound int
	Contributors   int
	Aggregate      []byte
	Active         []int
	// DP (train) or Noise (stats, evaluate) is the differential privacy the contributors
	// were asked for: members check that the sum carries at least their floor's noise.
	DP    *DPSpec
	Noise *ReleaseNoise
	// Contributions are the results the aggregate sums, in the order the coordinator added
	// them: each client's id, the SHA-256 of its ciphertext and its signature over that hash
	// (ContributionStatement). Members check the signatures and the contributor sets, fetch
	// the ciphertexts (a ContributionQuery) and re-add them before they help decrypt.
	Contributions []Contribution
}

// Contribution is one client's encrypted result as an aggregate's decrypt task lists it.
type Contribution struct {
	ClientID string `json:"client_id"`
	// Digest is the SHA-256 of the ciphertext the client submitted.
	Digest []byte `json:"digest"`
	// Endorsement is the client's signature, by its certificate's key, over
	// ContributionStatement; nil where clients have no certificates.
	Endorsement *Endorsement `json:"endorsement,omitempty"`
}

// ContributionDomain separates a client's signature over its ciphertext from every other
// statement a certificate key signs.
const ContributionDomain = "fedprop/contribution/v1"

// ContributionStatement is what a client signs for each ciphertext it submits: the run, the
// round and the purpose (stats, train or evaluate) it answers, and the SHA-256 of the
// ciphertext. Binding all four means a signed ciphertext counts only in the aggregate it was
// made for: the coordinator cannot move it to another round or another kind of sum.
func ContributionStatement(run string, round int, purpose Kind, digest []byte) [][]byte {
	return [][]byte{[]byte(run), []byte(strconv.Itoa(round)), []byte(purpose.String()), digest}
}

// ContributionQuery asks the coordinator for the ciphertexts of the aggregate a member was
// asked to help decrypt: the member (ClientID), the run, round and purpose of the aggregate,
// and its digest (secagg.Digest), so that the coordinator serves exactly that aggregate's
// contributions, in the decrypt task's order.
type ContributionQuery struct {
	ClientID        string
	RunID           string
	Round           int
	Purpose         Kind
	AggregateDigest string
}

// Differential-privacy mechanisms a train task can ask for.
const (
	DPNone   = ""       // no differential privacy
	DPClient = "client" // DP-FedAvg: the update is clipped to ClipNorm (and noised, in he mode)
	DPRecord = "record" // DP-SGD: per-example clipping and noise in local training
)

// DPSpec is the differential privacy a train task asks the client to apply. It carries
// parameters, never noise values or seeds: the client draws its noise from its own private
// source and checks the parameters against its own privacy floor.
//
// Under client-level DP the train result is unweighted: 1, the clipped update, and in the last
// place the clipping indicator (+0.5 unclipped, -0.5 clipped) instead of the loss. The round's
// sum carries Gaussian noise of standard deviation NoiseMultiplier*ClipNorm (and
// IndicatorNoiseStd on the indicators): added by the coordinator in plaintext mode
// (ExpectedContributors 0), split among the contributors in he mode, each adding
// 1/sqrt(ExpectedContributors) of it. Under record-level DP the result is 1, the update, and 0.
type DPSpec struct {
	Mechanism string
	ClipNorm  float64
	// NoiseMultiplier is z: DP-SGD's per-step multiplier (record), or the multiplier of the
	// round's noisy sum (client).
	NoiseMultiplier   float64
	IndicatorNoiseStd float64
	// ExpectedContributors is m, client level in he mode.
	ExpectedContributors int
	// Record-level DP-SGD: Poisson sampling rate and steps.
	SamplingRate float64
	Steps        int
	// ReferenceRecords is record-level DP-SGD's public step denominator: every client divides
	// its noised sums by SamplingRate*ReferenceRecords (0: by its own expected batch). See
	// logreg.DPSGDParams.ReferenceRecords.
	ReferenceRecords int
	// Delta is the delta the client reports its own epsilon at.
	Delta float64
}

// ReleaseNoise is the Gaussian noise on a stats or evaluate result of a differentially
// private run, in units of the release's per-record sensitivity: added by the coordinator in
// plaintext mode (ExpectedContributors 0), split among the contributors in he mode.
type ReleaseNoise struct {
	NoiseMultiplier      float64
	ExpectedContributors int
	Delta                float64
	// Level is the unit the release protects: DPRecord (each record's contribution bounded)
	// or DPClient (each client weighs its records by 1/n, so its whole contribution is bounded
	// as one record's).
	Level string
}

// FairnessSpec is the layout of the per-group evaluation sums: the decision thresholds, the
// histogram bins for group AUC, and the groups of attributes without bands or vocabulary.
type FairnessSpec struct {
	Thresholds []float64
	Bins       int
	Groups     map[string][]string
}

// ModelDocument is the scoring document of weights under an encoding, as model owners pull it:
// what a client needs to explain its scores (the contributions behind global importance).
func ModelDocument(schema *dataset.Schema, enc Encoding, features []string, weights []float64) *modelfile.Document {
	return &modelfile.Document{
		Format: modelfile.Format, Intercept: weights[0], Coefficients: weights[1:], Features: features, Schema: schema,
		Standardization: dataset.Standardization{Mean: enc.Mean, Std: enc.Std},
	}
}
