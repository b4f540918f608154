package client

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/task"
)

// memorySource serves contributions from memory: the benchmark times the member's own work,
// not the network (the bytes it would fetch are reported as fetched-MB/op).
type memorySource [][]byte

func (s memorySource) FetchContributions(_ context.Context, _ task.ContributionQuery, _ int, each func(int, []byte) error) error {
	for i, ct := range s {
		if err := each(i, ct); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkMemberVerifiesAggregate is what one committee member spends checking a decrypt
// task before its share, per aggregate of n one-ciphertext contributions under the default
// parameters: every signature against the CA (certificate chain and ECDSA), the contributor
// set against a share log of 100 earlier aggregates of the run, and the re-add (SHA-256 of
// each ciphertext, then secagg.SumCheck). The decryption share itself is not included
// (secagg's benchmarks time it), nor the download.
func BenchmarkMemberVerifiesAggregate(b *testing.B) {
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	if err != nil {
		b.Fatal(err)
	}
	key, err := secagg.NewMember(p, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	crs := sha256.Sum256([]byte("bench"))
	share, err := key.PublicKeyShare(crs[:])
	if err != nil {
		b.Fatal(err)
	}
	agg, err := secagg.NewPublicKeyAggregator(p, crs[:])
	if err != nil {
		b.Fatal(err)
	}
	if _, err := agg.Add(share); err != nil {
		b.Fatal(err)
	}
	pk, err := agg.PublicKey()
	if err != nil {
		b.Fatal(err)
	}
	enc, err := secagg.NewEncryptor(p, pk, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Re-adding costs the same whatever the words, so eight distinct encryptions serve every
	// contributor; each contributor still has its own certificate and signature.
	var distinct [][]byte
	for range 8 {
		ct, err := enc.Encrypt([]float64{1, 2, 3, 4})
		if err != nil {
			b.Fatal(err)
		}
		distinct = append(distinct, ct)
	}
	ca, err := pki.NewCA(pki.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	identity, err := secagg.NewIdentity(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("contributions=%d", n), func(b *testing.B) {
			sum, err := secagg.NewSum(p, pk, 4)
			if err != nil {
				b.Fatal(err)
			}
			spec := &task.DecryptSpec{Purpose: task.KindTrain, AggregateRound: 7, Contributors: n, Active: []int{1, 2}}
			var served memorySource
			for i := range n {
				name := fmt.Sprintf("app-%05d", i)
				ct := distinct[i%len(distinct)]
				if err := sum.Add(ct); err != nil {
					b.Fatal(err)
				}
				cred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: name})
				if err != nil {
					b.Fatal(err)
				}
				signer, err := cred.Signer()
				if err != nil {
					b.Fatal(err)
				}
				digest := sha256.Sum256(ct)
				e, err := signer.Sign(task.ContributionDomain, task.ContributionStatement("r", 7, task.KindTrain, digest[:])...)
				if err != nil {
					b.Fatal(err)
				}
				spec.Contributions = append(spec.Contributions, task.Contribution{ClientID: name, Digest: digest[:],
					Endorsement: &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}})
				served = append(served, ct)
			}
			if spec.Aggregate, err = sum.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
			// A log of 100 earlier aggregates of the run, each of other contributors.
			var log []ShareRecord
			for r := range 100 {
				rec := ShareRecord{Run: "r", Round: r, Purpose: task.KindTrain}
				for i := range n {
					rec.ContributorIDs = append(rec.ContributorIDs, fmt.Sprintf("old-%03d-%05d", r, i))
					rec.ContributionDigests = append(rec.ContributionDigests, fmt.Sprintf("%064x", r*n+i))
				}
				log = append(log, rec)
			}
			m, err := NewMember(MemberConfig{MinContributors: 2, Identity: identity, Verifier: pki.NewVerifier(ca.Certificate()),
				Contributions: served, ShareLog: log})
			if err != nil {
				b.Fatal(err)
			}
			tk := task.Task{RunID: "r", Round: 7, Kind: task.KindDecrypt, Decrypt: spec}
			digest := secagg.Digest(spec.Aggregate)
			var sigs, logs, readd time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				set, err := m.checkContributions("r", spec)
				if err != nil {
					b.Fatal(err)
				}
				checked := time.Now()
				for _, prev := range m.log {
					if err := task.CheckDifference(set, prev.contributorSet(), 2); err != nil {
						b.Fatal(err)
					}
				}
				logged := time.Now()
				if err := m.reAdd(context.Background(), tk, "m1", digest); err != nil {
					b.Fatal(err)
				}
				sigs, logs, readd = sigs+checked.Sub(start), logs+logged.Sub(checked), readd+time.Since(logged)
			}
			ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(b.N) }
			b.ReportMetric(float64(n*len(served[0]))/1e6, "fetched-MB/op")
			b.ReportMetric(ms(sigs), "signatures-ms/op")
			b.ReportMetric(ms(logs), "sharelog-ms/op")
			b.ReportMetric(ms(readd), "readd-ms/op")
		})
	}
}
