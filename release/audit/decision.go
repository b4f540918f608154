package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/pki"
)

// DecisionDomain separates an approver's decision signatures from every other statement their
// certificate key signs: a signature made for anything else never verifies as a decision.
const DecisionDomain = "fedprop.audit.decision/v1"

// MaxReasonBytes bounds a decision's reason: a paragraph, not a document.
const MaxReasonBytes = 4096

// VersionSubject is the Subject of every entry about a model version: "version N".
func VersionSubject(version uint64) string { return "version " + strconv.FormatUint(version, 10) }

// ParseVersionSubject reads a subject written by VersionSubject.
func ParseVersionSubject(s string) (uint64, bool) {
	v, ok := strings.CutPrefix(s, "version ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != v {
		return 0, false
	}
	return n, true
}

// IsDecision reports whether a is a human decision on a version (approve, reject, override):
// the actions that must carry the approver's signature.
func IsDecision(a Action) bool {
	return a == ActionApprove || a == ActionReject || a == ActionOverride
}

// DecisionStatement is what an approver signs under DecisionDomain: the action (so that an
// approval cannot be replayed as a rejection, or the reverse), the subject (the version), the
// version's content hash (so that the decision holds for exactly the bytes reviewed) and the
// reason.
func DecisionStatement(a Action, subject, digest, reason string) [][]byte {
	return [][]byte{[]byte(a), []byte(subject), []byte(digest), []byte(reason)}
}

// SignDecision signs a decision with the approver's own certificate key, as `fedprop model
// approve` and `reject` do before the decision leaves the approver's machine.
func SignDecision(s *pki.Signer, a Action, subject, digest, reason string) (pki.Signed, error) {
	if !IsDecision(a) {
		return pki.Signed{}, fmt.Errorf("%w: %s is not a decision", ErrInvalid, a)
	}
	if !isHash(digest) {
		return pki.Signed{}, fmt.Errorf("%w: content hash %q is not 64 lower-case hex digits", ErrInvalid, digest)
	}
	return s.Sign(DecisionDomain, DecisionStatement(a, subject, digest, reason)...)
}

// DecisionError says which decision does not verify, and why.
type DecisionError struct {
	// Seq is the entry's sequence number (0 for a decision not yet in the log).
	Seq     uint64
	Action  Action
	Subject string
	// Reason says what is wrong.
	Reason string
	// Err is the underlying error, if any (a pki.ErrBadSignature).
	Err error
}

func (e *DecisionError) Error() string {
	where := fmt.Sprintf("audit entry %d (%s, %s)", e.Seq, e.Action, e.Subject)
	if e.Seq == 0 {
		where = fmt.Sprintf("decision %s of %s", e.Action, e.Subject)
	}
	return fmt.Sprintf("%s: %v: %s", where, ErrBadSignature, e.Reason)
}

// Unwrap returns ErrBadSignature and the underlying error.
func (e *DecisionError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBadSignature}
	}
	return []error{ErrBadSignature, e.Err}
}

// VerifyDecision checks that e, a decision, carries a content hash and a signature over its
// DecisionStatement made with the key of a certificate the CA issued to an approver named
// e.Actor, valid at e.Time (so that a decision stays valid after the approver's certificate
// expires). It returns the signer. Every failure is a *DecisionError naming the entry.
//
// A decision made in the oversight console carries a Delegation instead (see
// verifyDelegatedDecision): the approver's certificate key signed the delegation, and the
// session key it delegated to signed the decision.
func VerifyDecision(v *pki.Verifier, e Entry) (pki.Identity, error) {
	bad := func(reason string, err error) error {
		return &DecisionError{Seq: e.Seq, Action: e.Action, Subject: e.Subject, Reason: reason, Err: err}
	}
	switch {
	case !IsDecision(e.Action):
		return pki.Identity{}, bad("not a decision", nil)
	case v == nil:
		return pki.Identity{}, bad("no CA certificate to check the approver's signature against", nil)
	case e.Signature == nil:
		return pki.Identity{}, bad("it has no signature", nil)
	case !isHash(e.Digest):
		return pki.Identity{}, bad("it names no content hash of the version", nil)
	case e.Role != string(pki.RoleApprover):
		return pki.Identity{}, bad(fmt.Sprintf("its actor's role is %q, not %q", e.Role, pki.RoleApprover), nil)
	}
	if e.Delegation != nil {
		return verifyDelegatedDecision(v, e, bad)
	}
	id, err := v.At(e.Time).Verify(*e.Signature, pki.Identity{Name: e.Actor, Role: pki.RoleApprover}, DecisionDomain,
		DecisionStatement(e.Action, e.Subject, e.Digest, e.Reason)...)
	if err != nil {
		return id, bad(err.Error(), err)
	}
	return id, nil
}

// VerifyDecisions checks every decision of a log with VerifyDecision and returns the number
// checked, or the first that fails.
func VerifyDecisions(v *pki.Verifier, entries []Entry) (int, error) {
	n := 0
	for _, e := range entries {
		if !IsDecision(e.Action) {
			continue
		}
		if _, err := VerifyDecision(v, e); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
