package secagg

import (
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"fmt"
	"io"
)

// NewIdentity makes a member's long-term X25519 identity key. A client makes it once, keeps it
// in its state directory and announces the public half when it enrols, so that the threshold
// shares of every later setup can be sealed for it. random may be nil for crypto/rand.
func NewIdentity(random io.Reader) (*ecdh.PrivateKey, error) {
	if random == nil {
		random = cryptorand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(random, seed[:]); err != nil {
		return nil, fmt.Errorf("identity key: read randomness: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(seed[:])
}

// NewMemberWithIdentity is NewMember for a member whose identity key already exists (it was
// registered when the client enrolled): the setup's secret and Shamir seed are drawn from
// random, the identity is kept.
func NewMemberWithIdentity(p Params, index int, identity *ecdh.PrivateKey, random io.Reader) (*Member, error) {
	if identity == nil || identity.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: member %d: identity must be an X25519 key", ErrMalformed, index)
	}
	m, err := NewMember(p, index, random)
	if err != nil {
		return nil, err
	}
	m.identity = identity
	return m, nil
}
