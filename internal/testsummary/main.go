// Command testsummary reads `go test -json` on standard input, prints what a plain `go test`
// prints (a line per package, the output of every failed test), and ends with what was skipped
// and why, then one line of counts: `tests: N passed, N failed, N skipped`. It exits 1 when a
// test or a build failed. `make test` pipes the suite through it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of test2json output.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type key struct{ pkg, test string }

// summary accumulates the events of one run.
type summary struct {
	out                    io.Writer
	output                 map[key][]string
	passed, failed, broken int
	skipped                []skip
}

// skip is one skipped test and why.
type skip struct{ test, why string }

func main() {
	s := &summary{out: os.Stdout, output: map[key][]string{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	if s.finish() {
		os.Exit(1)
	}
}

// read consumes the stream; lines that are not JSON (a build error on stderr merged in) are
// printed as they are.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.event(e)
	}
	return sc.Err()
}

func (s *summary) event(e event) {
	k := key{e.Package, e.Test}
	switch e.Action {
	case "output", "build-output":
		if e.Test == "" {
			// Package lines: ok, FAIL, no test files, and output outside any test.
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS") {
				fmt.Fprint(s.out, e.Output)
			}
			return
		}
		s.output[k] = append(s.output[k], e.Output)
	case "build-fail":
		s.broken++
	case "pass":
		if e.Test != "" {
			s.passed++
			delete(s.output, k)
		}
	case "fail":
		if e.Test != "" {
			s.failed++
			fmt.Fprint(s.out, strings.Join(s.output[k], ""))
			delete(s.output, k)
		}
	case "skip":
		if e.Test != "" {
			s.skipped = append(s.skipped, skip{test: strings.TrimPrefix(e.Package, "github.com/fedprop/fedprop/") + " " + e.Test, why: reason(s.output[k])})
			delete(s.output, k)
		}
	}
}

// reason is the message a skipped test logged: its last line that is not the SKIP marker.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		// "file_test.go:12: message": keep the message.
		if _, msg, ok := strings.Cut(l, ": "); ok && strings.Contains(l[:len(l)-len(msg)], ".go:") {
			return msg
		}
		return l
	}
	return "no reason given"
}

// finish prints the skips and the counts, and reports whether anything failed.
func (s *summary) finish() bool {
	if len(s.skipped) > 0 {
		// One line per reason: the reason, then the tests it skipped.
		byWhy := map[string][]string{}
		for _, sk := range s.skipped {
			byWhy[sk.why] = append(byWhy[sk.why], sk.test)
		}
		whys := make([]string, 0, len(byWhy))
		for why := range byWhy {
			whys = append(whys, why)
		}
		sort.Strings(whys)
		for _, why := range whys {
			tests := byWhy[why]
			sort.Strings(tests)
			fmt.Fprintf(s.out, "skipped %d (%s): %s\n", len(tests), why, strings.Join(tests, ", "))
		}
	} else {
		fmt.Fprintln(s.out, "skipped 0: nothing was skipped")
	}
	if s.broken > 0 {
		fmt.Fprintf(s.out, "%d packages failed to build\n", s.broken)
	}
	fmt.Fprintf(s.out, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	return s.failed > 0 || s.broken > 0
}
