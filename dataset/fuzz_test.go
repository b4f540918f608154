package dataset_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/fedprop/fedprop/dataset"
)

func FuzzReadCSVFrom(f *testing.F) {
	f.Add([]byte(testHeader+"\n"+`"all";25;"admin";100.5;"north";12;"f";"yes"`+"\n"), true)
	f.Add([]byte(testHeader+"\n"+`"none";x;"admin";1;"north";1;"f";"no"`+"\n"), true)
	f.Add([]byte("consent\tage\tjob\tbalance\tregion\tduration\tgender\ty\nall\t1\tblue\t2\teast\t3\tm\tno\n"), false)
	f.Add([]byte(`"a";"b"`+"\n\"unterminated"), true)
	f.Add([]byte(""), false)
	schema, err := dataset.ParseSchema("fuzz.yaml", []byte(testSchemaYAML))
	if err != nil {
		f.Fatal(err)
	}
	tab := *schema
	tab.CSV = dataset.CSVFormat{Delimiter: "\t"}
	f.Fuzz(func(t *testing.T, data []byte, quoted bool) {
		s := schema
		if !quoted {
			s = &tab
		}
		d, err := dataset.ReadCSVFrom(context.Background(), bytes.NewReader(data), "fuzz.csv", s)
		if err != nil {
			var ie *dataset.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			if ie.File != "fuzz.csv" || ie.Line < 0 || ie.Column < 0 {
				t.Fatalf("bad location in %#v", ie)
			}
			return
		}
		n := d.Len()
		if len(d.Numeric) != n || len(d.Category) != n || len(d.Groups) != n || len(d.Line) != n {
			t.Fatalf("ragged dataset: %d labels, %d numeric, %d category, %d groups, %d lines", n, len(d.Numeric), len(d.Category), len(d.Groups), len(d.Line))
		}
		for i := range n {
			if len(d.Numeric[i]) != len(s.Numeric) || len(d.Category[i]) != len(s.Categorical) || len(d.Groups[i]) != len(s.Sensitive) {
				t.Fatalf("row %d has the wrong width", i)
			}
			if d.Label[i] != 0 && d.Label[i] != 1 {
				t.Fatalf("row %d has label %v", i, d.Label[i])
			}
		}
		// What was read writes back and reads again to the same rows.
		var buf bytes.Buffer
		if err := dataset.WriteCSV(&buf, d); err != nil {
			return // an unquoted format cannot carry every value it can read (e.g. a raw "\r")
		}
		again, err := dataset.ReadCSVFrom(context.Background(), &buf, "again.csv", s)
		if err != nil {
			t.Fatalf("re-reading written rows: %v\n%s", err, buf.String())
		}
		if again.Len() != n {
			t.Fatalf("re-read %d rows, wrote %d", again.Len(), n)
		}
	})
}

func FuzzParseSchema(f *testing.F) {
	f.Add([]byte(testSchemaYAML))
	f.Add([]byte("label: {column: y, positive: '1', negative: ['0']}\nnumeric: [x]\nconsent: {tracked: false}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("consent: {tracked: true}\nsensitive: [{bands: [1, .inf]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := dataset.ParseSchema("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, dataset.ErrInvalidSchema) {
				t.Fatalf("error does not wrap ErrInvalidSchema: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed schema does not validate: %v", err)
		}
		for _, sa := range s.Sensitive {
			_ = sa.BandLabels()
		}
	})
}
