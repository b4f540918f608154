package secagg

import (
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
)

// Member file layout:
//
//	header (16) | index uint32 | threshold uint32 | committee size uint32 | flags uint32 |
//	identity private key (32) | Shamir seed (32) | setup id length uint32 |
//	ciphertexts decrypted uint64 | setup id | committee points (uint32 each) |
//	s_i (poly over QP) | tsk_i (poly over QP, if flags&1)
const (
	memberFixedSize    = headerSize + 16 + 32 + 32 + 4 + 8
	memberHasThreshold = 1
)

// MarshalBinary encodes the member's key material. The result is secret: store it only where
// SaveFile does, readable by the owner alone.
func (m *Member) MarshalBinary() ([]byte, error) {
	p := m.params
	size := memberFixedSize + len(m.setupID) + 4*len(m.committee) + 8*p.wordsPerQPPoly()
	var flags uint32
	if m.thresholdShare != nil {
		flags |= memberHasThreshold
		size += 8 * p.wordsPerQPPoly()
	}
	out := make([]byte, size)
	putHeader(out, kindMember, p)
	binary.LittleEndian.PutUint32(out[16:20], uint32(m.index))
	binary.LittleEndian.PutUint32(out[20:24], uint32(m.threshold))
	binary.LittleEndian.PutUint32(out[24:28], uint32(len(m.committee)))
	binary.LittleEndian.PutUint32(out[28:32], flags)
	copy(out[32:64], m.identity.Bytes())
	copy(out[64:96], m.shamirSeed[:])
	binary.LittleEndian.PutUint32(out[96:100], uint32(len(m.setupID)))
	binary.LittleEndian.PutUint64(out[100:108], uint64(m.decrypted))
	rest := out[memberFixedSize:]
	rest = rest[copy(rest, m.setupID):]
	for _, c := range m.committee {
		binary.LittleEndian.PutUint32(rest, uint32(c))
		rest = rest[4:]
	}
	rest = putRows(rest, qpRows(m.secret.Value))
	if m.thresholdShare != nil {
		putRows(rest, qpRows(m.thresholdShare.Poly))
	}
	return out, nil
}

// UnmarshalMember decodes key material written by MarshalBinary under the same parameters.
func UnmarshalMember(p Params, b []byte) (*Member, error) {
	if err := checkHeader(b, kindMember, p); err != nil {
		return nil, err
	}
	if len(b) < memberFixedSize {
		return nil, fmt.Errorf("%w: member: %d bytes, shorter than its header", ErrMalformed, len(b))
	}
	index := int(binary.LittleEndian.Uint32(b[16:20]))
	threshold := int(binary.LittleEndian.Uint32(b[20:24]))
	committeeSize := int(binary.LittleEndian.Uint32(b[24:28]))
	flags := binary.LittleEndian.Uint32(b[28:32])
	setupLen := int(binary.LittleEndian.Uint32(b[96:100]))
	decrypted := binary.LittleEndian.Uint64(b[100:108])
	if index < 1 || index > maxMembers || committeeSize > maxMembers || setupLen > maxSetupID || flags&^memberHasThreshold != 0 || decrypted > maxBudget {
		return nil, fmt.Errorf("%w: member: inconsistent header", ErrMalformed)
	}
	ready := flags&memberHasThreshold != 0
	if ready != (threshold != 0) || ready != (committeeSize != 0) || ready != (setupLen != 0) {
		return nil, fmt.Errorf("%w: member: threshold state is half set", ErrMalformed)
	}
	polys := 1
	if ready {
		polys = 2
	}
	if err := checkSize(b, kindMember, memberFixedSize+setupLen+4*committeeSize+polys*8*p.wordsPerQPPoly()); err != nil {
		return nil, err
	}
	identity, err := ecdh.X25519().NewPrivateKey(b[32:64])
	if err != nil {
		return nil, fmt.Errorf("%w: member identity key: %w", ErrMalformed, err)
	}
	m := &Member{params: p, index: index, identity: identity, threshold: threshold, decrypted: int(decrypted)}
	copy(m.shamirSeed[:], b[64:96])
	rest := b[memberFixedSize:]
	m.setupID = string(rest[:setupLen])
	rest = rest[setupLen:]
	if ready {
		m.committee = make([]int, committeeSize)
		for i := range m.committee {
			m.committee[i] = int(binary.LittleEndian.Uint32(rest))
			rest = rest[4:]
			if m.committee[i] < 1 || m.committee[i] > maxMembers || (i > 0 && m.committee[i-1] >= m.committee[i]) {
				return nil, fmt.Errorf("%w: member: committee is not increasing points", ErrMalformed)
			}
		}
		if _, found := slices.BinarySearch(m.committee, index); !found || threshold < 2 || threshold > committeeSize {
			return nil, fmt.Errorf("%w: member: threshold %d or committee %v inconsistent with member %d", ErrMalformed, threshold, m.committee, index)
		}
	}
	moduli := p.qpModuli()
	m.secret = rlwe.NewSecretKey(p.he)
	if rest, err = readRows(rest, qpRows(m.secret.Value), moduli, kindMember); err != nil {
		return nil, err
	}
	if ready {
		tsk := mhe.ShamirSecretShare{Poly: p.he.RingQP().NewPoly()}
		if _, err = readRows(rest, qpRows(tsk.Poly), moduli, kindMember); err != nil {
			return nil, err
		}
		m.thresholdShare = &tsk
	}
	return m, nil
}

// SaveFile writes the member's key material to path atomically (a temporary file in the same
// directory, synced, then renamed) with mode 0600.
func (m *Member) SaveFile(path string) (err error) {
	data, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // created with mode 0600
	if err != nil {
		return fmt.Errorf("save member: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(tmp.Name()))
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save member: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save member: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save member: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save member: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save member: %w", err)
	}
	// Make the rename durable; not every platform can sync a directory, so failure to open
	// it is not an error.
	if d, openErr := os.Open(dir); openErr == nil {
		syncErr := d.Sync()
		if closeErr := d.Close(); syncErr == nil {
			syncErr = closeErr
		}
		if syncErr != nil {
			return fmt.Errorf("save member: sync %s: %w", dir, syncErr)
		}
	}
	return nil
}

// LoadMemberFile reads key material written by SaveFile. It refuses a file that group or
// others may read (ErrInsecureFile), as ssh does with private keys.
func LoadMemberFile(p Params, path string) (*Member, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600", ErrInsecureFile, path, perm)
	}
	maxSize := int64(memberFixedSize + maxSetupID + 4*maxMembers + 2*8*p.wordsPerQPPoly())
	if info.Size() > maxSize {
		return nil, fmt.Errorf("%w: %s: %d bytes, more than a member file can hold", ErrMalformed, path, info.Size())
	}
	data := make([]byte, info.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}
	m, err := UnmarshalMember(p, data)
	if err != nil {
		return nil, fmt.Errorf("load member %s: %w", path, err)
	}
	return m, nil
}
