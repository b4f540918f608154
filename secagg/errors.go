package secagg

import "errors"

// Sentinel errors. Check them with errors.Is; the returned errors wrap them with detail.
var (
	// ErrInvalidParams reports a parameter literal that fails validation.
	ErrInvalidParams = errors.New("secagg: invalid parameters")
	// ErrMalformed reports bytes that do not decode: wrong magic, version, kind, size or a
	// coefficient out of range. Input from files and the network ends up here, never in a panic.
	ErrMalformed = errors.New("secagg: malformed input")
	// ErrParamsMismatch reports bytes produced under different scheme parameters.
	ErrParamsMismatch = errors.New("secagg: parameters mismatch")
	// ErrKeyMismatch reports a ciphertext under another collective public key, or a public-key
	// share over another common reference polynomial.
	ErrKeyMismatch = errors.New("secagg: key mismatch")
	// ErrLengthMismatch reports a vector whose length differs from the one expected.
	ErrLengthMismatch = errors.New("secagg: length mismatch")
	// ErrValueOutOfRange reports a NaN, an infinity, or a magnitude above Params.MaxAbsValue.
	ErrValueOutOfRange = errors.New("secagg: value out of range")
	// ErrNotReady reports a member asked to decrypt before it completed the threshold setup.
	ErrNotReady = errors.New("secagg: member setup not complete")
	// ErrActiveSet reports an active decryption set that is not T distinct, increasing
	// committee points including the member's own.
	ErrActiveSet = errors.New("secagg: invalid active set")
	// ErrShareMismatch reports a decryption share made for another aggregate, active set or
	// member than the one being combined.
	ErrShareMismatch = errors.New("secagg: share does not match")
	// ErrMissingShare reports that a share expected from a committee member is absent.
	ErrMissingShare = errors.New("secagg: missing share")
	// ErrDuplicate reports the same member's share (or box) given twice.
	ErrDuplicate = errors.New("secagg: duplicate share")
	// ErrOpen reports a sealed threshold share that does not open: wrong recipient key,
	// tampered box, or a box relayed under another setup, sender or recipient.
	ErrOpen = errors.New("secagg: sealed share does not open")
	// ErrBeyondBound reports a decryption outside the bound the flooding noise was sized for:
	// an aggregate of more than Params.MaxContributors contributions, or a share past the
	// key's Params.DecryptionBudget.
	ErrBeyondBound = errors.New("secagg: beyond the flooding bound")
	// ErrInsecureFile reports a member key file readable by group or others.
	ErrInsecureFile = errors.New("secagg: key file permissions too open")
)
