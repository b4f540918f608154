package privacy

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOrders: any string either fails with ErrInvalidArgument or yields orders the
// accountant accepts, which format and parse back to the same values.
func FuzzParseOrders(f *testing.F) {
	for _, seed := range []string{"1.5,2,4", " 1.25 , 64 ,1024", "", ",", "1", "NaN", "1e400", "2,,3", "0x1p4", "16384", "16384.5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		orders, err := ParseOrders(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ParseOrders(%q) error %v does not wrap ErrInvalidArgument", s, err)
			}
			return
		}
		parts := make([]string, len(orders))
		for i, a := range orders {
			if math.IsNaN(a) || a <= 1 || a > MaxOrder {
				t.Fatalf("ParseOrders(%q) accepted order %v", s, a)
			}
			parts[i] = strconv.FormatFloat(a, 'g', -1, 64)
		}
		again, err := ParseOrders(strings.Join(parts, ","))
		if err != nil {
			t.Fatalf("reparse of %v: %v", orders, err)
		}
		for i := range orders {
			if again[i] != orders[i] {
				t.Fatalf("reparse changed order %d: %v -> %v", i, orders[i], again[i])
			}
		}
	})
}

// FuzzParseConversion: only "pld", "tight" and "classic" (any case, trimmed) parse, and what
// parses prints back as its canonical name.
func FuzzParseConversion(f *testing.F) {
	for _, seed := range []string{"pld", "tight", "classic", " CLASSIC\t", "", "tigh", "Tight\x00", "PLD "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		conv, err := ParseConversion(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ParseConversion(%q) error %v does not wrap ErrInvalidArgument", s, err)
			}
			return
		}
		if conv.String() != strings.ToLower(strings.TrimSpace(s)) {
			t.Fatalf("ParseConversion(%q) = %v", s, conv)
		}
	})
}

// FuzzAccountantUnmarshalBinary: stored accountant state is decoded without panics; what decodes
// is valid, re-encodes to the same bytes, and can report an epsilon.
func FuzzAccountantUnmarshalBinary(f *testing.F) {
	acc := NewAccountant([]float64{1.5, 2, 32})
	if err := acc.Compose(0.01, 1, 10); err != nil {
		f.Fatal(err)
	}
	valid, err := acc.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	legacy := &Accountant{Orders: acc.Orders, RDP: acc.RDP} // no history: version 1
	old, err := legacy.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(old)
	f.Add([]byte{})
	f.Add([]byte{accountantBinaryVersion, 0})
	f.Add([]byte{accountantBinaryVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Accountant
		if err := a.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		again, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if string(again) != string(data) {
			t.Fatalf("re-encoding differs")
		}
		if _, _, err := a.Epsilon(1e-5, Tight); err != nil {
			t.Fatalf("epsilon of decoded state: %v", err)
		}
	})
}
