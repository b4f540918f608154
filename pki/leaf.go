package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
)

// VerifyByPeer checks that s is a signature over the statement made of parts under domain by
// the key of peer, a certificate a mutual-TLS handshake has already verified, and that s
// carries that very certificate. The coordinator's edge uses it to refuse, from the caller
// itself, a signed statement that committee members would refuse later (a signature by
// another certificate, or one that does not match): without it one client could make every
// aggregate it joins undecryptable.
func VerifyByPeer(peer *x509.Certificate, s Signed, domain string, parts ...[]byte) error {
	if peer == nil {
		return fmt.Errorf("%w: no peer certificate", ErrBadSignature)
	}
	if !bytes.Equal(s.Certificate, peer.Raw) {
		return fmt.Errorf("%w: the statement carries another certificate than the caller's", ErrBadSignature)
	}
	pub, ok := peer.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: the caller's certificate key is not ECDSA", ErrBadSignature)
	}
	if len(s.Signature) == 0 || !ecdsa.VerifyASN1(pub, digest(domain, parts...), s.Signature) {
		return fmt.Errorf("%w: the caller's signature does not match the %s statement", ErrBadSignature, domain)
	}
	return nil
}
