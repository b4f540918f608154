package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// DelegationDomain separates a person's delegation of signing to a short-lived session key
// (the oversight console's sign-in) from every other statement their certificate key signs.
const DelegationDomain = "fedprop.console.delegation/v1"

// MaxDelegation is the longest a delegation may last: a working day. A session key lives in
// a browser, so it must not outlive the session it was made for by much.
const MaxDelegation = 8 * time.Hour

// delegationNonceBytes is the size of a delegation's random nonce.
const delegationNonceBytes = 16

// Bounds on a delegation as it arrives: a P-256 public key in PKIX DER is 91 bytes, an
// ASN.1 signature at most 72.
const (
	maxSessionKey     = 256
	maxDelegationSig  = 256
	maxDelegationSalt = 64
)

// Delegation is a person's statement, signed with their certificate key, that a session
// key may sign on their behalf until NotAfter. It lets a browser, which never holds the
// person's certificate key, sign decisions the CA can still attribute to that person: the
// coordinator that relays the statement cannot make one, because it holds neither key.
type Delegation struct {
	// SessionKey is the delegated ECDSA P-256 public key, PKIX DER.
	SessionKey []byte `json:"session_key"`
	// NotAfter ends the delegation (whole seconds, UTC).
	NotAfter time.Time `json:"not_after"`
	// Nonce makes every delegation distinct.
	Nonce []byte `json:"nonce"`
	// Signature is ECDSA by the delegator's certificate key over DelegationStatement, ASN.1.
	Signature []byte `json:"signature"`
}

// DelegationStatement is what a delegator signs under DelegationDomain: the session key, the
// end of the delegation as decimal Unix seconds, and the nonce.
func DelegationStatement(sessionKey []byte, notAfter time.Time, nonce []byte) [][]byte {
	return [][]byte{sessionKey, []byte(strconv.FormatInt(notAfter.Unix(), 10)), nonce}
}

// PreImage is the exact byte string a statement's signature hashes (with SHA-256): the domain
// label and each part, length-prefixed. A party that signs with an API that hashes the message
// itself (WebCrypto's ECDSA with SHA-256) is handed this.
func PreImage(domain string, parts ...[]byte) []byte {
	n := 4 + len(domain)
	for _, p := range parts {
		n += 8 + len(p)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(domain))) // #nosec G115 -- domains are short constants
	b = append(b, domain...)
	for _, p := range parts {
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// Delegate signs a delegation of signing to session until notAfter, which is cut to whole
// seconds and must lie within MaxDelegation of now.
func (s *Signer) Delegate(session *ecdsa.PublicKey, notAfter, now time.Time) (Delegation, error) {
	notAfter = notAfter.UTC().Truncate(time.Second)
	if !notAfter.After(now) || notAfter.Sub(now) > MaxDelegation {
		return Delegation{}, fmt.Errorf("%w: a delegation must end after now and within %v, not at %s", ErrInvalid, MaxDelegation, notAfter.Format(time.RFC3339))
	}
	if session == nil || session.Curve != elliptic.P256() {
		return Delegation{}, fmt.Errorf("%w: the session key must be ECDSA P-256", ErrInvalid)
	}
	der, err := x509.MarshalPKIXPublicKey(session)
	if err != nil {
		return Delegation{}, fmt.Errorf("%w: session key: %w", ErrInvalid, err)
	}
	nonce := make([]byte, delegationNonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		return Delegation{}, err
	}
	signed, err := s.Sign(DelegationDomain, DelegationStatement(der, notAfter, nonce)...)
	if err != nil {
		return Delegation{}, err
	}
	return Delegation{SessionKey: der, NotAfter: notAfter, Nonce: nonce, Signature: signed.Signature}, nil
}

// CheckSize refuses a delegation whose fields are larger than any real one's, before anything
// parses them.
func (d Delegation) CheckSize() error {
	switch {
	case len(d.SessionKey) == 0 || len(d.SessionKey) > maxSessionKey:
		return fmt.Errorf("%w: delegation session key: %d bytes, want 1 to %d", ErrInvalid, len(d.SessionKey), maxSessionKey)
	case len(d.Signature) == 0 || len(d.Signature) > maxDelegationSig:
		return fmt.Errorf("%w: delegation signature: %d bytes, want 1 to %d", ErrInvalid, len(d.Signature), maxDelegationSig)
	case len(d.Nonce) > maxDelegationSalt:
		return fmt.Errorf("%w: delegation nonce: %d bytes, at most %d", ErrInvalid, len(d.Nonce), maxDelegationSalt)
	}
	return nil
}

// SessionPublicKey parses the delegated key: ECDSA P-256 only.
func (d Delegation) SessionPublicKey() (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(d.SessionKey)
	if err != nil {
		return nil, fmt.Errorf("%w: delegation session key: %w", ErrBadSignature, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: delegation session key is not ECDSA P-256", ErrBadSignature)
	}
	return pub, nil
}

// VerifyDelegation checks that d was signed with the key of cert (DER), a certificate the CA
// issued (valid at the verifier's time, see At), by want when its Name or Role is set, and
// returns who delegated.
func (v *Verifier) VerifyDelegation(cert []byte, d Delegation, want Identity) (Identity, error) {
	if err := d.CheckSize(); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	id, err := v.Verify(Signed{Certificate: cert, Signature: d.Signature}, want, DelegationDomain,
		DelegationStatement(d.SessionKey, d.NotAfter, d.Nonce)...)
	if err != nil {
		return id, fmt.Errorf("delegation: %w", err)
	}
	return id, nil
}

// VerifyDelegated checks a statement signed by a delegated session key: the delegation, signed
// by the key of s.Certificate (a certificate the CA issued, to want when set), in force at
// the verifier's time (not after d.NotAfter), and s.Signature, made by the session key over the
// statement of parts under domain. It returns the delegator.
func (v *Verifier) VerifyDelegated(s Signed, d Delegation, want Identity, domain string, parts ...[]byte) (Identity, error) {
	id, err := v.VerifyDelegation(s.Certificate, d, want)
	if err != nil {
		return id, err
	}
	if at := v.now(); at.After(d.NotAfter) {
		return id, fmt.Errorf("%w: %s's delegation to a session key ended at %s, before the statement (%s)", ErrBadSignature, id,
			d.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	pub, err := d.SessionPublicKey()
	if err != nil {
		return id, err
	}
	if len(s.Signature) == 0 || len(s.Signature) > maxDelegationSig || !ecdsa.VerifyASN1(pub, digest(domain, parts...), s.Signature) {
		return id, fmt.Errorf("%w: the session key %s delegated does not sign the %s statement", ErrBadSignature, id, domain)
	}
	return id, nil
}
