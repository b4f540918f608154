package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummaryEndsWithSkipsAndCounts(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"start","Package":"github.com/fedprop/fedprop/a"}`,
		`{"Action":"run","Package":"github.com/fedprop/fedprop/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"github.com/fedprop/fedprop/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"pass","Package":"github.com/fedprop/fedprop/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"github.com/fedprop/fedprop/a","Test":"TestDB","Output":"    db_test.go:12: FEDPROP_TEST_POSTGRES is not set\n"}`,
		`{"Action":"output","Package":"github.com/fedprop/fedprop/a","Test":"TestDB","Output":"--- SKIP: TestDB (0.00s)\n"}`,
		`{"Action":"skip","Package":"github.com/fedprop/fedprop/a","Test":"TestDB"}`,
		`{"Action":"output","Package":"github.com/fedprop/fedprop/a","Test":"TestBad","Output":"    bad_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"github.com/fedprop/fedprop/a","Test":"TestBad"}`,
		`{"Action":"output","Package":"github.com/fedprop/fedprop/a","Output":"FAIL\tgithub.com/fedprop/fedprop/a\t0.1s\n"}`,
		`not json: a build message`,
	}, "\n")
	var out bytes.Buffer
	s := &summary{out: &out, output: map[key][]string{}}
	require.NoError(t, s.read(strings.NewReader(stream)))
	assert.True(t, s.finish(), "a failed test fails the run")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Equal(t, "tests: 1 passed, 1 failed, 1 skipped", lines[len(lines)-1])
	assert.Equal(t, "skipped 1 (FEDPROP_TEST_POSTGRES is not set): a TestDB", lines[len(lines)-2])
	assert.Contains(t, out.String(), "bad_test.go:3: boom", "a failed test's output is shown")
	assert.Contains(t, out.String(), "FAIL\tgithub.com/fedprop/fedprop/a")
	assert.Contains(t, out.String(), "not json: a build message")
	assert.NotContains(t, out.String(), "=== RUN", "a passing test's output is not")

	clean := &summary{out: &out, output: map[key][]string{}}
	require.NoError(t, clean.read(strings.NewReader(`{"Action":"pass","Package":"p","Test":"T"}`)))
	assert.False(t, clean.finish())
}
