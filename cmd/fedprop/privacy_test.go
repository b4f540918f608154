package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPrivacyAccountantFlag: pld is the default and prints RDP beside it; --accountant rdp and
// --conversion (which implies rdp) give the Renyi-DP accountant; contradictions are usage
// errors that name the flag.
func TestPrivacyAccountantFlag(t *testing.T) {
	figure := []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "0.8", "--steps", "10"}
	tests := []struct {
		name string
		args []string
		code int
		out  []string
		err  string
	}{
		{name: "default pld", args: figure, out: []string{"epsilon 0.90", "pld accountant", "rdp cross-check: epsilon 1.78"}},
		{name: "explicit pld", args: append(figure, "--accountant", "PLD"), out: []string{"epsilon 0.90"}},
		{name: "rdp", args: append(figure, "--accountant", "rdp"), out: []string{"epsilon 1.78", "rdp accountant", "tight conversion"}},
		{name: "conversion implies rdp", args: append(figure, "--conversion", "classic"), out: []string{"epsilon 2.30", "classic conversion"}},
		{name: "unknown accountant", args: append(figure, "--accountant", "moments"), code: 2, err: "--accountant"},
		{name: "conversion with pld", args: append(figure, "--accountant", "pld", "--conversion", "tight"), code: 2, err: "--conversion tight applies to --accountant rdp"},
		{name: "conversion pld", args: append(figure, "--conversion", "pld"), code: 2, err: "--accountant pld"},
		{name: "sigma pld", args: []string{"privacy", "sigma", "--q", "1", "--steps", "1", "--delta", "1e-6", "--epsilon", "1"},
			out: []string{"sigma 4.2", "pld accountant"}},
		{name: "sigma rdp", args: []string{"privacy", "sigma", "--q", "1", "--steps", "1", "--delta", "1e-6", "--epsilon", "1", "--accountant", "rdp"},
			out: []string{"sigma 4.53088", "rdp accountant, tight conversion"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			require.Equal(t, tt.code, code, errOut)
			for _, want := range tt.out {
				assert.Contains(t, out, want)
			}
			assert.Contains(t, errOut, tt.err)
		})
	}
}
