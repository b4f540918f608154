package secagg

import (
	"bytes"
	mrand "math/rand/v2"
	"sync"
	"testing"
)

// Fuzz targets for every decoder of network and file input. Run one with, for example:
//
//	go test -run='^$' -fuzz=FuzzSumAdd -fuzztime=20s ./secagg/
//
// Each checks that nothing panics and that whatever decodes is consistent.

var (
	fuzzOnce      sync.Once
	fuzzCommittee *committee
	fuzzAggregate []byte
	fuzzUpdate    []byte
)

// fuzzFixture builds one small committee and aggregate shared by the fuzz targets.
func fuzzFixture(f *testing.F) (*committee, []byte, []byte) {
	fuzzOnce.Do(func() {
		p := testParams(f)
		fuzzCommittee = setupCommittee(f, p, 3, 2, 120)
		vectors := randomVectors(mrand.New(mrand.NewPCG(17, 17)), 2, 10, 1)
		fuzzAggregate = encryptAndSum(f, p, fuzzCommittee.publicKey, vectors)
		enc, err := NewEncryptor(p, fuzzCommittee.publicKey, seededReader(1))
		if err != nil {
			f.Fatal(err)
		}
		if fuzzUpdate, err = enc.Encrypt(vectors[0]); err != nil {
			f.Fatal(err)
		}
	})
	return fuzzCommittee, fuzzAggregate, fuzzUpdate
}

func addSeeds(f *testing.F, valid ...[]byte) {
	for _, v := range valid {
		f.Add(v)
		for _, m := range mutations(v) {
			f.Add(m)
		}
	}
}

func FuzzSumAdd(f *testing.F) {
	c, aggregate, update := fuzzFixture(f)
	addSeeds(f, update, aggregate)
	sum, err := NewSum(c.params, c.publicKey, 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		before := sum.Count()
		if err := sum.Add(b); err != nil {
			if sum.Count() != before {
				t.Fatalf("a refused add changed the count: %v", err)
			}
			return
		}
		if sum.Count() != before+1 {
			t.Fatalf("count %d after adding to %d", sum.Count(), before)
		}
	})
}

func FuzzUnmarshalMember(f *testing.F) {
	c, _, _ := fuzzFixture(f)
	ready, err := c.member(1).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	fresh, err := NewMember(c.params, 9, seededReader(3))
	if err != nil {
		f.Fatal(err)
	}
	notReady, err := fresh.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	addSeeds(f, ready, notReady)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalMember(c.params, b)
		if err != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("a decoded member does not encode back to the same bytes")
		}
	})
}

func FuzzPublicKeyShare(f *testing.F) {
	c, _, _ := fuzzFixture(f)
	addSeeds(f, c.pkShares[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		agg, err := NewPublicKeyAggregator(c.params, c.crsSeed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agg.Add(b); err == nil {
			if _, err := agg.Add(b); err == nil {
				t.Fatal("the same member's share was added twice")
			}
		}
	})
}

func FuzzPublicKey(f *testing.F) {
	c, _, _ := fuzzFixture(f)
	addSeeds(f, c.publicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := NewEncryptor(c.params, b, seededReader(1)); err == nil {
			if _, err := NewSum(c.params, b, 10); err != nil {
				t.Fatalf("a key the encryptor accepts is refused by the sum: %v", err)
			}
		}
	})
}

func FuzzDecryptionShareAggregate(f *testing.F) {
	c, aggregate, update := fuzzFixture(f)
	addSeeds(f, aggregate, update)
	active := []int{1, 2}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = c.member(1).DecryptionShare(b, active)
	})
}

func FuzzCombineDecryptionShare(f *testing.F) {
	c, aggregate, _ := fuzzFixture(f)
	active := []int{2, 3}
	share2, err := c.member(2).DecryptionShare(aggregate, active)
	if err != nil {
		f.Fatal(err)
	}
	share3, err := c.member(3).DecryptionShare(aggregate, active)
	if err != nil {
		f.Fatal(err)
	}
	addSeeds(f, share2)
	d, err := NewDecryptor(c.params)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = d.Decrypt(aggregate, active, map[int][]byte{2: b, 3: share3})
	})
}

func FuzzSealedShare(f *testing.F) {
	c, _, _ := fuzzFixture(f)
	var inbox []SealedShare
	for _, b := range c.boxes {
		if b.To == 1 {
			inbox = append(inbox, b)
		}
	}
	addSeeds(f, inbox[0].Box)
	m, err := NewMember(c.params, 1, seededReader(120*1000+1)) // member 1's key material
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		boxes := append([]SealedShare{{From: inbox[0].From, To: 1, Box: b}}, inbox[1:]...)
		err := m.CombineThresholdShares("setup-1", 2, c.roster, boxes)
		if err == nil && !bytes.Equal(b, inbox[0].Box) {
			t.Fatal("a box that is not the sender's opened")
		}
	})
}
