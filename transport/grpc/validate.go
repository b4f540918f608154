package grpctransport

import (
	"context"
	"fmt"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// Bounds on request fields, checked before a request reaches the coordinator.
const (
	maxTaskIDLen          = 256
	maxRunIDLen           = 128
	maxSoftwareVersionLen = 64
	identityKeyLen        = 32 // an X25519 public key
	maxConfigYAMLBytes    = 1 << 20
	maxRefusalLen         = task.MaxRefusalLen
	maxTrainRecords       = 1 << 40
	maxEndorsementCert    = 16 << 10
	maxEndorsementSig     = 256
)

// validateUnary refuses a request whose fields are malformed before any handler sees it.
func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// checkRequest checks what can be checked of a request without the run's state: ids, sizes,
// encodings and the consistency of a result's vector. The coordinator's core checks the rest
// (dimensions, NaN and infinities, stale and replayed ids). The status names the field.
func checkRequest(req any) error {
	var err error
	switch r := req.(type) {
	case *pb.RegisterRequest:
		err = checkRegister(r)
	case *pb.PollTaskRequest:
		err = checkClientID(r.GetClientId(), "", 0)
		if err == nil && r.GetWaitMillis() < 0 {
			err = fieldError(r.GetClientId(), "", 0, "wait_millis", "must not be negative, got %d", r.GetWaitMillis())
		}
	case *pb.SubmitResultRequest:
		err = checkSubmit(r)
	case *pb.GetRunRequest:
		if id := r.GetRunId(); id != "" {
			err = checkText("", id, 0, "run_id", id, maxRunIDLen)
		}
	case *pb.StartRunRequest:
		switch n := len(r.GetConfigYaml()); {
		case n == 0:
			err = fieldError("", "", 0, "config_yaml", "empty")
		case n > maxConfigYAMLBytes:
			err = fieldError("", "", 0, "config_yaml", "%d bytes, at most %d", n, maxConfigYAMLBytes)
		}
	}
	return toStatus(err)
}

func checkRegister(r *pb.RegisterRequest) error {
	if err := checkClientID(r.GetClientId(), "", 0); err != nil {
		return err
	}
	if v := r.GetSoftwareVersion(); v != "" {
		if err := checkText(r.GetClientId(), "", 0, "software_version", v, maxSoftwareVersionLen); err != nil {
			return err
		}
	}
	if n := len(r.GetIdentityKey()); n != 0 && n != identityKeyLen {
		return fieldError(r.GetClientId(), "", 0, "identity_key", "%d bytes, want %d (an X25519 public key) or none", n, identityKeyLen)
	}
	if n := r.GetTrainRecords(); n < 0 || n > maxTrainRecords {
		return fieldError(r.GetClientId(), "", 0, "train_records", "%d is outside [0, %d]", n, maxTrainRecords)
	}
	return nil
}

func checkSubmit(r *pb.SubmitResultRequest) error {
	client, run, round := r.GetClientId(), r.GetRunId(), int(r.GetRound())
	if err := checkClientID(client, run, round); err != nil {
		return err
	}
	if err := checkText(client, run, round, "task_id", r.GetTaskId(), maxTaskIDLen); err != nil {
		return err
	}
	if err := checkText(client, run, round, "run_id", run, maxRunIDLen); err != nil {
		return err
	}
	if round < 0 {
		return fieldError(client, run, round, "round", "must not be negative, got %d", round)
	}
	if e := r.GetEndorsement(); e != nil && (len(e.GetCertificate()) > maxEndorsementCert || len(e.GetSignature()) > maxEndorsementSig) {
		return fieldError(client, run, round, "endorsement", "certificate of %d bytes (at most %d) or signature of %d bytes (at most %d)",
			len(e.GetCertificate()), maxEndorsementCert, len(e.GetSignature()), maxEndorsementSig)
	}
	if reason := r.GetRefusal(); reason != "" {
		if err := checkText(client, run, round, "refusal", reason, maxRefusalLen); err != nil {
			return err
		}
	}
	sum := r.GetSum()
	if sum == nil {
		return nil // resultFromProto names it
	}
	n, plain, ct := int(sum.GetLength()), len(sum.GetPlain()), len(sum.GetCiphertext())
	switch {
	case ct > 0 && plain > 0:
		return nil // resultFromProto names it: both encodings set
	case ct > 0 && n <= 0:
		return fieldError(client, run, round, "sum.length", "must be positive with a ciphertext, got %d", n)
	case ct == 0 && n != 0 && n != plain:
		return fieldError(client, run, round, "sum.length", "%d, but the sum carries %d plaintext values", n, plain)
	}
	return nil
}

func checkClientID(id, run string, round int) error {
	if err := pki.ValidName(id); err != nil {
		if len(id) > pki.MaxNameLen {
			err = fmt.Errorf("%d bytes, at most %d", len(id), pki.MaxNameLen)
		}
		return &coordinator.ProtocolError{Client: clip(id), Run: clip(run), Round: round, Field: "client_id", Err: fmt.Errorf("%w: %w", task.ErrInvalid, err)}
	}
	return nil
}

// clip shortens a hostile string before an error message echoes it.
func clip(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "..."
}

// checkText requires a non-empty, valid UTF-8 string of at most maxLen bytes without control
// characters.
func checkText(client, run string, round int, field, s string, maxLen int) error {
	switch {
	case s == "":
		return fieldError(client, run, round, field, "empty")
	case len(s) > maxLen:
		return fieldError(client, run, round, field, "%d bytes, at most %d", len(s), maxLen)
	case !utf8.ValidString(s):
		return fieldError(client, run, round, field, "not valid UTF-8")
	}
	for i, c := range s {
		if unicode.IsControl(c) || !unicode.IsPrint(c) {
			return fieldError(client, run, round, field, "unprintable character %U at byte %d", c, i)
		}
	}
	return nil
}

func fieldError(client, run string, round int, field, format string, args ...any) error {
	return &coordinator.ProtocolError{Client: clip(client), Run: clip(run), Round: round, Field: field, Err: fmt.Errorf("%w: %s", task.ErrInvalid, fmt.Sprintf(format, args...))}
}
