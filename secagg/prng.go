package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// streamPRNG is a keyed deterministic stream of pseudorandom bytes: AES-256 in counter mode
// over zeros, with the key derived from a domain label and key material. It implements
// lattigo's sampling.PRNG (an io.Reader) for the samplers this package drives itself (secret
// keys, Shamir polynomials, the common reference polynomial, encryption). It replaces
// lattigo's blake2b-XOF KeyedPRNG there because sampling was most of the setup and encryption
// time, and AES-CTR runs several times faster on CPUs with AES instructions.
type streamPRNG struct {
	stream cipher.Stream
}

func newStreamPRNG(label string, material ...[]byte) (*streamPRNG, error) {
	h := sha256.New()
	h.Write([]byte(label))
	for _, m := range material {
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(m))))
		h.Write(m)
	}
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("stream PRNG: %w", err)
	}
	// The key is unique to its use, so a fixed counter start is safe.
	return &streamPRNG{stream: cipher.NewCTR(block, make([]byte, aes.BlockSize))}, nil
}

// Read fills b with the next bytes of the stream; it never fails.
func (s *streamPRNG) Read(b []byte) (int, error) {
	clear(b)
	s.stream.XORKeyStream(b, b)
	return len(b), nil
}
