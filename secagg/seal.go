package secagg

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Threshold shares travel from member to member through the coordinator, sealed so that only
// the recipient can read them and only the sender can have made them:
//
//   - The key comes from static-static X25519 between the sender's and the recipient's
//     identity keys (registered at enrolment), expanded by HKDF-SHA256 with a context that names
//     the parameters, the setup, the threshold, the direction (from, to) and both public keys.
//     A coordinator that does not hold either private key can neither read a box nor forge one.
//   - XChaCha20-Poly1305 encrypts, with the same context as associated data, so a box relayed
//     under another setup id, sender or recipient fails to open.
//   - The nonce is synthetic: HMAC-SHA256 of the plaintext under a second derived key, as in
//     SIV. Sealing is deterministic, so a retried keygen task resends identical boxes and a
//     nonce can only ever repeat with an identical plaintext.
//
// Box layout: version (1) | nonce (24) | ciphertext and tag.
const (
	boxVersion  = 1
	boxOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	maxSetupID  = 256
)

// Recipient names a committee member and its X25519 identity public key (32 bytes).
type Recipient struct {
	Index       int
	IdentityKey []byte
}

// SealedShare is a threshold share from member From, sealed for member To. The coordinator
// relays it without being able to open it.
type SealedShare struct {
	From, To int
	Box      []byte
}

// shareContext binds everything a box must not be replayed across.
func shareContext(p Params, setupID string, threshold, from, to int, fromKey, toKey []byte) []byte {
	ctx := make([]byte, 0, 64+len(setupID)+len(fromKey)+len(toKey))
	ctx = append(ctx, "fedprop/secagg/share/v1"...)
	ctx = append(ctx, p.id[:]...)
	ctx = binary.LittleEndian.AppendUint32(ctx, uint32(len(setupID)))
	ctx = append(ctx, setupID...)
	ctx = binary.LittleEndian.AppendUint32(ctx, uint32(threshold))
	ctx = binary.LittleEndian.AppendUint32(ctx, uint32(from))
	ctx = binary.LittleEndian.AppendUint32(ctx, uint32(to))
	ctx = append(ctx, fromKey...)
	return append(ctx, toKey...)
}

// boxKeys derives the AEAD key and the nonce key for one direction of one pair.
func boxKeys(own *ecdh.PrivateKey, peer []byte, context []byte) (aeadKey, nonceKey []byte, err error) {
	peerKey, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: identity key: %w", ErrMalformed, err)
	}
	shared, err := own.ECDH(peerKey)
	if err != nil { // a low-order peer key gives an all-zero secret
		return nil, nil, fmt.Errorf("%w: identity key: %w", ErrMalformed, err)
	}
	keys, err := hkdf.Key(sha256.New, shared, nil, string(context), 64)
	if err != nil {
		return nil, nil, fmt.Errorf("derive share key: %w", err)
	}
	return keys[:32], keys[32:], nil
}

func sealBox(own *ecdh.PrivateKey, peer, context, plaintext []byte) ([]byte, error) {
	aeadKey, nonceKey, err := boxKeys(own, peer, context)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(aeadKey)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	mac := hmac.New(sha256.New, nonceKey)
	mac.Write(plaintext)
	nonce := mac.Sum(nil)[:chacha20poly1305.NonceSizeX]
	box := make([]byte, 0, boxOverhead+len(plaintext))
	box = append(box, boxVersion)
	box = append(box, nonce...)
	return aead.Seal(box, nonce, plaintext, context), nil
}

func openBox(own *ecdh.PrivateKey, peer, context, box []byte) ([]byte, error) {
	if len(box) < boxOverhead || box[0] != boxVersion {
		return nil, fmt.Errorf("%w: box of %d bytes or unknown version", ErrOpen, len(box))
	}
	aeadKey, _, err := boxKeys(own, peer, context)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(aeadKey)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	nonce := box[1 : 1+chacha20poly1305.NonceSizeX]
	plaintext, err := aead.Open(nil, nonce, box[1+chacha20poly1305.NonceSizeX:], context)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	return plaintext, nil
}
