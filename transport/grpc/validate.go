package grpctransport

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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
	if err := checkContributionSignature(ctx, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// parsedUnary refuses a request that did not parse (see requestCodec).
func parsedUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := unparsed(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// parsedStreams refuses, on a stream, each received message that did not parse.
func parsedStreams(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, parsedStream{ss})
}

type parsedStream struct{ grpc.ServerStream }

func (s parsedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return unparsed(m)
}

// requestCodec is gRPC's protobuf codec, except for a request that does not parse: invalid
// UTF-8 in a string field, or bytes that are no protobuf message. gRPC answers those INTERNAL
// before any interceptor runs, which tells the caller the fault is the server's (and a client
// retries it). requestCodec instead leaves the message empty, marked with the parse error in
// an unknown field, and reports success; parsedUnary and parsedStreams, first in the chain,
// then refuse the marked message with InvalidArgument naming the field. They run before the
// edge's identity check, which would otherwise blame the emptied client_id on the caller;
// under mutual TLS every caller has passed the handshake by then, and what it learns is only
// how its own bytes were malformed. No other interceptor and no handler sees a marked message.
type requestCodec struct{ encoding.CodecV2 }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	field := locateBadUTF8(data.Materialize(), m.ProtoReflect().Descriptor(), "", 0)
	proto.Reset(m)
	mark := protowire.AppendTag(nil, unparsedField, protowire.BytesType)
	mark = protowire.AppendBytes(mark, append(slices.Clone(unparsedKey[:]), field+"\x00"+err.Error()...))
	m.ProtoReflect().SetUnknown(mark)
	return nil
}

// unparsedField is the field number of requestCodec's mark: the highest a message can have,
// reserved by no fedprop message.
const unparsedField = protowire.MaxValidNumber

// unparsedKey tells requestCodec's mark from the same field number sent by a caller, so that a
// caller cannot make the refusal echo text of its choosing.
var unparsedKey = func() (k [16]byte) {
	if _, err := rand.Read(k[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return k
}()

// unparsed returns the InvalidArgument status for a message requestCodec marked, or nil. A
// caller's own field of the mark's number is refused too, without echoing it.
func unparsed(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	b := pm.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == unparsedField {
			v, n := protowire.ConsumeBytes(b)
			if typ == protowire.BytesType && n >= 0 && bytes.HasPrefix(v, unparsedKey[:]) {
				field, cause, _ := bytes.Cut(v[len(unparsedKey):], []byte{0})
				if len(field) > 0 {
					return toStatus(fieldError("", "", 0, string(field), "not valid UTF-8"))
				}
				return toStatus(fieldError("", "", 0, "(message)", "not a valid protobuf message: %s", cause))
			}
			return toStatus(fieldError("", "", 0, fmt.Sprint(unparsedField), "this field number is reserved"))
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// locateBadUTF8 names the first string field of b (a message md) that holds invalid UTF-8,
// as a dotted path of field names, or returns "" when there is none or b does not parse.
func locateBadUTF8(b []byte, md protoreflect.MessageDescriptor, prefix string, depth int) string {
	if depth > 16 {
		return ""
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ == protowire.BytesType && fd != nil {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			name := string(fd.Name())
			if prefix != "" {
				name = prefix + "." + name
			}
			switch fd.Kind() {
			case protoreflect.StringKind:
				if !utf8.Valid(v) {
					return name
				}
			case protoreflect.MessageKind, protoreflect.GroupKind:
				if f := locateBadUTF8(v, fd.Message(), name, depth+1); f != "" {
					return f
				}
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
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
	case ct > 0 && plain > 0, len(sum.GetSparseIndex()) > 0 || len(sum.GetSparseValue()) > 0:
		return nil // resultFromProto names it: more than one encoding set, or the sparse form's faults
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
