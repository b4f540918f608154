package parquet_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
)

// sentinels are the errors whose presence the two readers must agree on.
var sentinels = []error{
	dataset.ErrMissingColumn, dataset.ErrUndeclaredColumn, dataset.ErrDuplicateColumn, dataset.ErrBadNumber,
	dataset.ErrUnseenCategory, dataset.ErrBadLabel, dataset.ErrBadRow, dataset.ErrMissingValue, dataset.ErrLineTooLong,
}

// FuzzParquetMatchesCSV writes fuzzed records both as a CSV file and as its Parquet copy
// (every field as text, or with missing-value tokens as nulls) and reads both: they must give
// the same rows, or fail with the same sentinels at the same row and column.
func FuzzParquetMatchesCSV(f *testing.F) {
	_, rows := records(pqCSV)
	var seed []string
	for _, r := range rows {
		seed = append(seed, strings.Join(r, ","))
	}
	f.Add(strings.Join(seed, "\n"), false)
	f.Add(strings.Join(seed, "\n"), true)
	f.Add("1,all,1e999,admin,1,north,f,1,yes\n2,all,3,?,NaN,x,?,>=1000,Y", true)
	f.Add("1,all, 30 ,blue , 0x10,south,\u00a0f,<1000, no", false)
	s := pqSchema(f)
	header, _ := records(pqCSV)
	f.Fuzz(func(t *testing.T, text string, nulls bool) {
		var recs [][]string
		for _, line := range strings.Split(text, "\n") {
			fields := strings.Split(line, ",")
			if strings.ContainsAny(line, "\"\r") || len(fields) != len(header) {
				return // a CSV quirk (quoting, line endings, field count), not a value
			}
			recs = append(recs, fields)
		}
		var csv strings.Builder
		csv.WriteString(strings.Join(header, ",") + "\n")
		for _, r := range recs {
			csv.WriteString(strings.Join(r, ",") + "\n")
		}
		kinds := []string{}
		if nulls {
			kinds = []string{asNullText, asNullText, asNullText, asNullText, asNullText, asNullText, asNullText, asNullText, asNullText}
		}
		want, csvErr := dataset.ReadCSVFrom(context.Background(), strings.NewReader(csv.String()), "pq.csv", s)
		got, pqErr := readParquet(t, s, copyAsParquet(t, s, header, recs, kinds, 0), dataset.ReadOptions{})
		if (csvErr == nil) != (pqErr == nil) {
			t.Fatalf("CSV: %v\nParquet: %v\n%q", csvErr, pqErr, csv.String())
		}
		if csvErr != nil {
			var ce, pe *dataset.InputError
			if !errors.As(csvErr, &ce) || !errors.As(pqErr, &pe) {
				t.Fatalf("not *InputErrors: %v, %v", csvErr, pqErr)
			}
			if ce.Line-1 != pe.Line || ce.Column != pe.Column || ce.ColumnName != pe.ColumnName {
				t.Fatalf("different places:\nCSV: %v\nParquet: %v", csvErr, pqErr)
			}
			for _, s := range sentinels {
				if errors.Is(csvErr, s) != errors.Is(pqErr, s) {
					t.Fatalf("different errors:\nCSV: %v\nParquet: %v", csvErr, pqErr)
				}
			}
			return
		}
		requireSameRows(t, want, got)
		if want.ExcludedNoConsent != got.ExcludedNoConsent {
			t.Fatalf("%d left out of the CSV, %d of the Parquet copy", want.ExcludedNoConsent, got.ExcludedNoConsent)
		}
	})
}

// FuzzReadFrom reads arbitrary bytes as a Parquet file: whatever they are, the read returns
// rows or an *dataset.InputError, and never panics.
func FuzzReadFrom(f *testing.F) {
	s := pqSchema(f)
	header, rows := records(pqCSV)
	f.Add(copyAsParquet(f, s, header, rows, nil, 0))
	f.Add(copyAsParquet(f, s, header, rows, []string{asInt64, asDict, asInt64, asNullText, asFloat64, asDict, asNullText, asText, asNullText}, 2))
	f.Add([]byte("PAR1"))
	f.Add([]byte(pqCSV))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parquet.ReadFrom(context.Background(), bytes.NewReader(data), int64(len(data)), "fuzz.parquet", s, dataset.ReadOptions{})
		if err != nil {
			var ie *dataset.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			return
		}
		for i := range d.Len() {
			if d.Label[i] != 0 && d.Label[i] != 1 {
				t.Fatalf("row %d has label %v", i, d.Label[i])
			}
		}
	})
}
