package dataset_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
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
	f.Add([]byte(layoutSchemaYAML))
	f.Add([]byte("csv: {header: false, columns: [x, y], missing: ['?'], skip_lines: 2, comment: '#'}\nlabel: {column: y, positive: [a, b], negative: c}\nnumeric: [x]\nconsent: {tracked: false}\nmissing: {x: impute}\nformat: parquet\n"))
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

// FuzzReadCSVLayout reads arbitrary input through the layout options: no header, skipped and
// comment lines, trimming, missing-value tokens with every policy. Whatever the input, the
// read either fails with an *InputError or gives rows that keep the schema's promises, and
// that write back and read again to the same rows.
func FuzzReadCSVLayout(f *testing.F) {
	f.Add([]byte("1, 30, admin, f, all, yes\n2, ?, blue , m, all, N\n3, NA, ?, ?, all, Y\n4, , ,, all , no\n"), true)
	f.Add([]byte("|1x3 Cross validator\njunk \"\n1, 30, admin, f, all, yes\n|x\n2,?,?,?,?,?\n"), false)
	f.Add([]byte("1, \"30\", \"ad\nmin\", f, all, \"yes\"\n"), true)
	f.Add([]byte("\ufeff1,1e999,admin,f,all,yes\n"), false)
	f.Add([]byte(""), false)
	quoted, err := dataset.ParseSchema("fuzz.yaml", []byte(layoutSchemaYAML))
	if err != nil {
		f.Fatal(err)
	}
	plain, err := dataset.ParseSchema("fuzz.yaml", []byte(strings.Replace(layoutSchemaYAML, "  trim_space: true\n", "  trim_space: true\n  skip_lines: 1\n  comment: \"|\"\n  quote: \"\"\n", 1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, isQuoted bool) {
		s := plain
		if isQuoted {
			s = quoted
		}
		d, err := dataset.ReadCSVFrom(context.Background(), bytes.NewReader(data), "fuzz.csv", s)
		if err != nil {
			var ie *dataset.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			if ie.File != "fuzz.csv" || ie.Line < 0 || ie.Column < 0 || ie.Column > len(s.CSV.Columns) {
				t.Fatalf("bad location in %#v", ie)
			}
			return
		}
		jobLevels := len(s.Categorical[0].Values)
		prev := s.CSV.SkipLines
		for i := range d.Len() {
			if d.Label[i] != 0 && d.Label[i] != 1 {
				t.Fatalf("row %d has label %v", i, d.Label[i])
			}
			if v := d.Numeric[i][0]; math.IsInf(v, 0) {
				t.Fatalf("row %d has age %v", i, v)
			}
			if c := d.Category[i][0]; c < 0 || int(c) >= jobLevels {
				t.Fatalf("row %d has job index %d of %d levels", i, c, jobLevels)
			}
			if g := d.Groups[i][0]; g != dataset.MissingCategory && strings.TrimSpace(g) != g {
				t.Fatalf("row %d has the untrimmed group %q", i, g)
			}
			if d.Line[i] <= prev {
				t.Fatalf("row %d is on line %d, after line %d", i, d.Line[i], prev)
			}
			prev = d.Line[i]
		}
		st := d.Stats()
		if st.Observed[0] > st.Count {
			t.Fatalf("%v ages observed in %v rows", st.Observed[0], st.Count)
		}
		var buf bytes.Buffer
		if err := dataset.WriteCSV(&buf, d); err != nil {
			return // an unquoted format cannot carry every value it can read
		}
		again, err := dataset.ReadCSVFrom(context.Background(), &buf, "again.csv", s)
		if err != nil {
			t.Fatalf("re-reading written rows: %v\n%q", err, buf.String())
		}
		if !reflect.DeepEqual(numbersOf(again), numbersOf(d)) || !reflect.DeepEqual(again.Category, d.Category) ||
			!reflect.DeepEqual(again.Label, d.Label) || !reflect.DeepEqual(again.Groups, d.Groups) {
			t.Fatalf("rows changed on the way back through WriteCSV:\n%q", buf.String())
		}
	})
}
