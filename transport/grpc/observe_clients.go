package grpctransport

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// ClientObserver hears what clients do at the network edge, for the oversight console's
// federation page. Its methods are called on every client call and must not block.
type ClientObserver interface {
	// ClientCalled reports a call by client id, with the certificate it presented (nil
	// without mutual TLS).
	ClientCalled(id string, cert *x509.Certificate)
	// ClientSubmitted reports a result the coordinator accepted (ok) or refused: its kind, the
	// client's refusal reason when it declined the task, and, for a plaintext statistics
	// result, the records the client excluded for lack of consent (excluded >= 0; -1 when the
	// coordinator cannot read it).
	ClientSubmitted(id string, kind task.Kind, refusal string, excluded float64, ok bool)
}

// ObserveClients is a server option that reports client calls to o. It runs after the edge's
// checks, so only admitted calls are reported.
func ObserveClients(o ClientObserver) grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, ok := req.(clientIDRequest)
		if !ok {
			return handler(ctx, req)
		}
		id := r.GetClientId()
		o.ClientCalled(id, callerCertificate(ctx))
		resp, err := handler(ctx, req)
		if sub, ok := req.(*pb.SubmitResultRequest); ok {
			kind, kerr := kindFromProto(sub.GetKind())
			if kerr == nil {
				excluded := -1.0
				if plain := sub.GetSum().GetPlain(); kind == task.KindStats && sub.GetRefusal() == "" && len(plain) > 0 {
					excluded = plain[len(plain)-1]
				}
				o.ClientSubmitted(id, kind, sub.GetRefusal(), excluded, err == nil)
			}
		}
		return resp, err
	})
}

// callerCertificate is the caller's verified certificate, nil without mutual TLS.
func callerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}
