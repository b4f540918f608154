package grpctransport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheRejectionLogIsRateLimitedPerPeerAndReason floods the rejection log: one line per
// peer host and reason per interval, the next line counting the refusals left out, whatever
// the peer's port; and a flood from more hosts than it remembers is logged under one peer.
func TestTheRejectionLogIsRateLimitedPerPeerAndReason(t *testing.T) {
	type refusal struct {
		at     time.Duration
		peer   string
		reason RejectReason
	}
	type line struct {
		peer       string
		reason     RejectReason
		suppressed float64
	}
	cases := []struct {
		name     string
		refusals []refusal
		want     []line
	}{
		{"a flood from one peer is one line a minute", []refusal{
			{0, "10.0.0.1:5000", RejectUnknownCA}, {time.Second, "10.0.0.1:5001", RejectUnknownCA}, {30 * time.Second, "10.0.0.1:5002", RejectUnknownCA},
			{59 * time.Second, "10.0.0.1:5003", RejectUnknownCA}, {60 * time.Second, "10.0.0.1:5004", RejectUnknownCA}, {61 * time.Second, "10.0.0.1:5005", RejectUnknownCA},
		}, []line{{"10.0.0.1:5000", RejectUnknownCA, 0}, {"10.0.0.1:5004", RejectUnknownCA, 3}}},
		{"reasons and peers are counted apart", []refusal{
			{0, "10.0.0.1:1", RejectUnknownCA}, {0, "10.0.0.1:2", RejectPlaintext}, {0, "10.0.0.2:1", RejectUnknownCA}, {0, "10.0.0.2:2", RejectUnknownCA},
		}, []line{{"10.0.0.1:1", RejectUnknownCA, 0}, {"10.0.0.1:2", RejectPlaintext, 0}, {"10.0.0.2:1", RejectUnknownCA, 0}}},
		{"IPv6 peers by host", []refusal{{0, "[::1]:1", RejectRevoked}, {time.Second, "[::1]:2", RejectRevoked}},
			[]line{{"[::1]:1", RejectRevoked, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			now := start
			r := newRejectLog(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now }, 0)
			for _, f := range tc.refusals {
				now = start.Add(f.at)
				addr, err := net.ResolveTCPAddr("tcp", f.peer)
				require.NoError(t, err)
				r.reject(context.Background(), addr, f.reason)
			}
			var got []line
			sc := bufio.NewScanner(&buf)
			for sc.Scan() {
				var l map[string]any
				require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
				assert.Equal(t, "WARN", l["level"])
				got = append(got, line{l["peer"].(string), RejectReason(l["reason"].(string)), l["suppressed"].(float64)})
			}
			assert.Equal(t, tc.want, got)
		})
	}

	t.Run("more peers than remembered", func(t *testing.T) {
		var buf bytes.Buffer
		now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		r := newRejectLog(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now }, time.Minute)
		for i := range maxRejectKeys + 100 {
			r.reject(context.Background(), &net.TCPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)), Port: 1}, RejectPlaintext)
		}
		assert.Len(t, r.seen, maxRejectKeys+1, "the remembered peers and one entry for the rest")
		assert.Equal(t, maxRejectKeys+1, bytes.Count(buf.Bytes(), []byte("\n")), "one line per remembered peer and one for the rest")
		assert.Contains(t, buf.String(), fmt.Sprintf(`"peer":"10.0.%d.%d:1"`, maxRejectKeys>>8&0xff, maxRejectKeys&0xff))
		assert.Equal(t, 99, r.seen[rejectKey{host: manyPeers, reason: RejectPlaintext}].suppressed)
		// Once the interval has passed, old peers are forgotten and new ones logged again.
		now = now.Add(time.Minute)
		r.reject(context.Background(), &net.TCPAddr{IP: net.IPv4(192, 168, 0, 1), Port: 1}, RejectPlaintext)
		assert.Len(t, r.seen, 1)
	})
}
