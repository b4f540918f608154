package modelcard_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/release/modelcard"
)

// FuzzDecode reads arbitrary card documents (a card may come from a store or over the network):
// it must return an error or a card that renders without panicking.
func FuzzDecode(f *testing.F) {
	card, err := modelcard.Build(bankInput(f))
	require.NoError(f, err)
	var buf bytes.Buffer
	require.NoError(f, card.Write(&buf))
	f.Add(buf.Bytes())
	in := bankInput(f)
	in.PrivacyAudit = sampleAudit()
	audited, err := modelcard.Build(in)
	require.NoError(f, err)
	buf.Reset()
	require.NoError(f, audited.Write(&buf))
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"fedprop.modelcard/v1","privacy_audit":{"attacks":[{"rates":[{"fpr":1e308},{"fpr":-1}]},{}]}}`))
	f.Add([]byte(`{"format":"fedprop.modelcard/v1","approval":{"status":"approved"},"fairness":{"report":{"thresholds":[],"attributes":[{"groups":[{"rates":[]}]}]}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := modelcard.Decode(bytes.NewReader(raw))
		if err != nil {
			return
		}
		require.NotEmpty(t, c.Markdown())
	})
}
