package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Every byte string this package emits starts with a 16-byte header:
//
//	0  magic "FPSA"
//	4  format version (1)
//	5  kind
//	6  two reserved zero bytes
//	8  parameter fingerprint (8 bytes)
//
// followed by a kind-specific fixed header and little-endian 64-bit coefficient words, RNS
// row by row (modulus 0 first). Sizes are fully determined by the parameters and the fixed
// header, so a decoder checks the exact length before it allocates anything, and every word
// is range-checked before lattigo sees it.
const (
	wireMagic   = "FPSA"
	wireVersion = 1
	headerSize  = 16
)

// kind tags what a byte string holds, so one kind is never decoded as another.
type kind uint8

const (
	kindPublicKeyShare  kind = 1
	kindPublicKey       kind = 2
	kindCiphertext      kind = 3
	kindDecryptionShare kind = 4
	kindMember          kind = 5
	kindShamirShare     kind = 6
)

// String names the kind in error messages.
func (k kind) String() string {
	switch k {
	case kindPublicKeyShare:
		return "public-key share"
	case kindPublicKey:
		return "public key"
	case kindCiphertext:
		return "ciphertext"
	case kindDecryptionShare:
		return "decryption share"
	case kindMember:
		return "member key material"
	case kindShamirShare:
		return "threshold share"
	default:
		return fmt.Sprintf("kind %d", uint8(k))
	}
}

func putHeader(b []byte, k kind, p Params) {
	copy(b[0:4], wireMagic)
	b[4] = wireVersion
	b[5] = byte(k)
	b[6], b[7] = 0, 0
	copy(b[8:16], p.id[:])
}

// checkHeader validates the common header and that b is exactly want bytes long when want > 0.
func checkHeader(b []byte, k kind, p Params) error {
	if len(b) < headerSize {
		return fmt.Errorf("%w: %s: %d bytes, shorter than the header", ErrMalformed, k, len(b))
	}
	if string(b[0:4]) != wireMagic || b[6] != 0 || b[7] != 0 {
		return fmt.Errorf("%w: %s: bad magic", ErrMalformed, k)
	}
	if b[4] != wireVersion {
		return fmt.Errorf("%w: %s: format version %d, want %d", ErrMalformed, k, b[4], wireVersion)
	}
	if kind(b[5]) != k {
		return fmt.Errorf("%w: got a %s where a %s was expected", ErrMalformed, kind(b[5]), k)
	}
	if [8]byte(b[8:16]) != p.id {
		return fmt.Errorf("%w: %s made under parameters %x, these are %x", ErrParamsMismatch, k, b[8:16], p.id)
	}
	return nil
}

func checkSize(b []byte, k kind, want int) error {
	if len(b) != want {
		return fmt.Errorf("%w: %s: %d bytes, want %d", ErrMalformed, k, len(b), want)
	}
	return nil
}

// putRows writes rows as little-endian words into dst, which must be large enough, and
// returns the rest of dst.
func putRows(dst []byte, rows [][]uint64) []byte {
	for _, row := range rows {
		for _, w := range row {
			binary.LittleEndian.PutUint64(dst, w)
			dst = dst[8:]
		}
	}
	return dst
}

// readRows fills rows from little-endian words in src, checking every word is below the
// modulus of its row, and returns the rest of src. src must hold enough words.
func readRows(src []byte, rows [][]uint64, moduli []uint64, what kind) ([]byte, error) {
	for i, row := range rows {
		q := moduli[i]
		for j := range row {
			w := binary.LittleEndian.Uint64(src)
			if w >= q {
				return nil, fmt.Errorf("%w: %s: coefficient %d of row %d is not reduced", ErrMalformed, what, j, i)
			}
			row[j] = w
			src = src[8:]
		}
	}
	return src, nil
}

// checkRows checks that src holds rows of n words, row r reduced modulo moduli[r mod len].
func checkRows(src []byte, moduli []uint64, rows, n int, what kind) error {
	for r := range rows {
		q := moduli[r%len(moduli)]
		row := src[8*r*n : 8*(r+1)*n]
		for j := 0; j < n; j++ {
			if binary.LittleEndian.Uint64(row[8*j:]) >= q {
				return fmt.Errorf("%w: %s: coefficient %d of row %d is not reduced", ErrMalformed, what, j, r)
			}
		}
	}
	return nil
}

// fingerprint8 returns the first 8 bytes of SHA-256 over a domain label and data.
func fingerprint8(label string, data ...[]byte) [8]byte {
	h := sha256.New()
	h.Write([]byte(label))
	for _, d := range data {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}
