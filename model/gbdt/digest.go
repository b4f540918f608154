package gbdt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"slices"
)

// Digester computes the Digest of a model that grows by trees appended to the same base score
// and features, as boosting's does, hashing each tree once: a run names its model by digest
// at every level of every tree, and hashing all the trees so far each time would cost more
// than growing them. The zero Digester is ready; handed a model that does not extend the last
// (Model.Extends), it starts over, so its answer is Digest's.
type Digester struct {
	// last is the model last hashed (its trees shared with it: a model does not change once
	// made), and h has hashed its JSON up to and including its last tree, before the closing
	// "]}".
	last Model
	h    hash.Hash
}

// Of returns m.Digest(), "" when m does not encode (a NaN or an infinity).
func (d *Digester) Of(m *Model) string {
	if m.Trees == nil {
		// Encodes as null, not as an empty list: nothing to carry on from.
		d.h = nil
		return digestJSON(m)
	}
	if d.h == nil || !m.Extends(&d.last) {
		if !d.start(m) {
			return ""
		}
	}
	for i := len(d.last.Trees); i < len(m.Trees); i++ {
		b, err := json.Marshal(&m.Trees[i])
		if err != nil {
			d.h = nil
			return ""
		}
		if i > 0 {
			d.h.Write([]byte(","))
		}
		d.h.Write(b)
	}
	d.last.Trees = slices.Clone(m.Trees)
	h, ok := d.h.(hash.Cloner)
	if !ok {
		d.h = nil
		return digestJSON(m)
	}
	c, err := h.Clone()
	if err != nil {
		d.h = nil
		return digestJSON(m)
	}
	_, _ = c.Write([]byte("]}")) // writing to a hash never fails
	return hex.EncodeToString(c.Sum(nil))
}

// start hashes m's JSON up to its first tree, as encoding/json writes it for digestJSON.
func (d *Digester) start(m *Model) bool {
	d.h, d.last = nil, Model{}
	base, err := json.Marshal(m.BaseScore)
	if err != nil {
		return false
	}
	features, err := json.Marshal(m.Features)
	if err != nil {
		return false
	}
	h := sha256.New()
	h.Write([]byte(`{"base_score":`))
	h.Write(base)
	h.Write([]byte(`,"features":`))
	h.Write(features)
	h.Write([]byte(`,"trees":[`))
	d.h, d.last = h, Model{BaseScore: m.BaseScore, Features: slices.Clone(m.Features)}
	return true
}

// digestJSON is the definition Digester follows: the hex SHA-256 of the JSON of m's base
// score, features and trees.
func digestJSON(m *Model) string {
	b, err := json.Marshal(struct {
		BaseScore float64   `json:"base_score"`
		Features  []Feature `json:"features"`
		Trees     []Tree    `json:"trees"`
	}{m.BaseScore, m.Features, m.Trees})
	if err != nil {
		// Only a NaN or an infinity fails to encode, which Validate refuses: such a model
		// matches no digest.
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
