package console

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelcard"
)

// OverrideSeparator joins a decision's reason and its fairness override's reason into the one
// reason the decision signs and the audit log records; the console's script joins them the
// same way before it signs.
const OverrideSeparator = "\n\nFairness override: "

type reviewData struct {
	Version                    uint64
	RunID, Status, ContentHash string
	Flagged                    bool
	Violations                 []string
	Decided                    bool
	DecidedBy, DecidedReason   string
	DecidedSeq                 uint64
	Domain, Subject            string
}

func (c *Console) review(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	n, ok := versionParam(r)
	if !ok {
		c.fail(w, s, http.StatusNotFound, "No such version", "Not a version number: "+r.PathValue("n"), "")
		return
	}
	subject, err := c.cfg.Backend.ReviewSubject(ctx, n)
	if err != nil {
		c.versionError(w, s, n, err)
		return
	}
	v, err := c.cfg.Backend.Store().Version(ctx, n)
	if err != nil {
		c.versionError(w, s, n, err)
		return
	}
	d := reviewData{Version: n, RunID: v.RunID, Status: subject.Status, ContentHash: subject.ContentHash, Flagged: subject.Flagged,
		Domain: audit.DecisionDomain, Subject: audit.VersionSubject(n)}
	if vd := v.FairnessVerdict; vd != nil {
		for _, vi := range vd.Violations {
			d.Violations = append(d.Violations, vi.String())
		}
	}
	if rv := c.cfg.Backend.Status(n); rv.Status != modelcard.StatusCandidate {
		d.Decided, d.DecidedBy, d.DecidedReason, d.DecidedSeq = true, rv.Actor, rv.Reason, rv.Entry.Seq
	}
	c.render(w, http.StatusOK, "review", view{Title: fmt.Sprintf("Review version %d", n), Nav: "runs", Session: viewOf(s),
		Scripts: []string{"keystore.js", "review.js"}, Data: d})
}

// decide records an approver's decision signed in the browser by the session's delegated key.
// The role is checked first (an owner's form is refused whatever it carries), then the form,
// then the signature against the session's key, and last the release gate checks it all again
// against the CA, as it checks every decision.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, s *session) {
	n, ok := versionParam(r)
	if !ok {
		c.fail(w, s, http.StatusNotFound, "No such version", "Not a version number: "+r.PathValue("n"), "")
		return
	}
	back := fmt.Sprintf("/versions/%d/review", n)
	if !s.may(deciders...) {
		c.cfg.Logger.Warn("console decision refused: role", "identity", s.identity.String(), "version", n)
		c.fail(w, s, http.StatusForbidden, "Decision refused", fmt.Sprintf("Your role, %s, may not decide on a version: only approvers decide.", s.identity.Role),
			"No decision was recorded. Ask a holder of an approver certificate to review version "+fmt.Sprint(n)+".")
		return
	}
	refuse := func(code int, msg string, err error) {
		detail := ""
		if err != nil {
			detail = err.Error()
		}
		c.cfg.Logger.Warn("console decision refused", "identity", s.identity.String(), "version", n, "reason", msg, "err", err)
		c.render(w, code, "error", view{Title: "Decision refused", Session: viewOf(s), Data: errorData{Message: msg, Detail: detail, Back: back}})
	}
	action := audit.Action(r.PostFormValue("action"))
	// Browsers send a textarea's line breaks as CRLF; the script signs them as LF.
	reason := strings.ReplaceAll(r.PostFormValue("reason"), "\r\n", "\n")
	overrideReason := strings.ReplaceAll(r.PostFormValue("override_reason"), "\r\n", "\n")
	override := r.PostFormValue("override") == "yes"
	switch {
	case action != audit.ActionApprove && action != audit.ActionReject:
		refuse(http.StatusBadRequest, "Choose approve or reject.", nil)
		return
	case strings.TrimSpace(reason) == "":
		refuse(http.StatusBadRequest, "A decision needs a reason.", nil)
		return
	case override && action != audit.ActionApprove:
		refuse(http.StatusBadRequest, "Only an approval overrides the fairness policy.", nil)
		return
	case override && strings.TrimSpace(overrideReason) == "":
		refuse(http.StatusBadRequest, "A fairness override needs its own reason.", nil)
		return
	}
	if override {
		action = audit.ActionOverride
		reason += OverrideSeparator + overrideReason
	}
	hash := r.PostFormValue("content_hash")
	sig, err := asn1Signature(r.PostFormValue("signature"))
	if err != nil {
		refuse(http.StatusBadRequest, "The decision carries no valid signature by this session's key: sign in again with fedprop console login from your approver kit.", err)
		return
	}
	if !ecdsa.VerifyASN1(s.key, digestOf(audit.DecisionPreImage(action, audit.VersionSubject(n), hash, reason)), sig) {
		refuse(http.StatusForbidden, "The signature does not match this decision and this session's key.", nil)
		return
	}
	d := coordinator.Decision{Version: n, Reason: reason, Override: override, ContentHash: hash,
		Signature: pki.Signed{Certificate: append([]byte(nil), s.cert.Raw...), Signature: sig}, Delegation: &s.delegation}
	who := coordinator.Reviewer{Name: s.identity.Name, Role: string(s.identity.Role)}
	var rv coordinator.Review
	if action == audit.ActionReject {
		rv, err = c.cfg.Backend.Reject(r.Context(), who, d)
	} else {
		rv, err = c.cfg.Backend.Approve(r.Context(), who, d)
	}
	switch {
	case errors.Is(err, coordinator.ErrFlagged):
		refuse(http.StatusConflict, "The fairness policy flagged this version: approve it with the override and its reason.", err)
		return
	case errors.Is(err, coordinator.ErrReviewed):
		refuse(http.StatusConflict, "This version has already been decided.", err)
		return
	case errors.Is(err, coordinator.ErrBadSignature):
		refuse(http.StatusForbidden, "The release gate did not accept the decision's signature.", err)
		return
	case errors.Is(err, coordinator.ErrInvalidDecision):
		refuse(http.StatusBadRequest, "The decision is not valid.", err)
		return
	case errors.Is(err, coordinator.ErrNotFound):
		c.versionError(w, s, n, err)
		return
	case err != nil:
		c.internal(w, s, err)
		return
	}
	c.cfg.Logger.Info("console decision recorded", "identity", s.identity.String(), "version", n, "status", rv.Status, "audit_seq", rv.Entry.Seq)
	c.render(w, http.StatusOK, "decided", view{Title: "Decision recorded", Nav: "runs", Session: viewOf(s),
		Data: struct {
			Version uint64
			Status  string
			Actor   string
			Seq     uint64
			Hash    string
		}{n, rv.Status, rv.Actor, rv.Entry.Seq, rv.Entry.Hash}})
}

// asn1Signature reads the browser's signature: base64 of WebCrypto's raw r||s (64 bytes for
// P-256), returned as the ASN.1 DER ECDSA signature every other fedprop signature is.
func asn1Signature(b64 string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("signature: not base64: %w", err)
	}
	if len(raw) != 64 {
		return nil, fmt.Errorf("signature: %d bytes, want 64 (P-256 r||s)", len(raw))
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[32:]))
	})
	return b.Bytes()
}

func digestOf(preImage []byte) []byte {
	sum := sha256.Sum256(preImage)
	return sum[:]
}
