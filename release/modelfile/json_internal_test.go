package modelfile

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSnakeCase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Mean", "mean"},
		{"CSV", "csv"},
		{"SkipLines", "skip_lines"},
		{"PositiveAliases", "positive_aliases"},
		{"ModelInput", "model_input"},
		{"HTTPServer", "http_server"},
		{"UserID", "user_id"},
		{"Base64Key", "base64_key"},
		{"already_snake", "already_snake"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, snakeCase(tc.in))
		})
	}
}
