package audit

import (
	"github.com/fedprop/fedprop/pki"
)

// verifyDelegatedDecision checks a decision made in the oversight console: its Delegation is
// signed by the key of e.Signature.Certificate, a certificate the CA issued to an approver named
// e.Actor, valid at e.Time; the delegation was in force at e.Time; and e.Signature.Signature is
// the delegated session key's signature over the DecisionStatement, the very statement an
// approver signs with `fedprop model approve`. Neither the coordinator nor a writer of the store
// holds the approver's key or the session key, so neither can make such a decision.
func verifyDelegatedDecision(v *pki.Verifier, e Entry, bad func(string, error) error) (pki.Identity, error) {
	id, err := v.At(e.Time).VerifyDelegated(*e.Signature, *e.Delegation, pki.Identity{Name: e.Actor, Role: pki.RoleApprover},
		DecisionDomain, DecisionStatement(e.Action, e.Subject, e.Digest, e.Reason)...)
	if err != nil {
		return id, bad(err.Error(), err)
	}
	return id, nil
}

// DecisionPreImage is the exact byte string a decision's signature hashes with SHA-256: what a
// console session's key signs (WebCrypto hashes the message it is given).
func DecisionPreImage(a Action, subject, digest, reason string) []byte {
	return pki.PreImage(DecisionDomain, DecisionStatement(a, subject, digest, reason)...)
}
