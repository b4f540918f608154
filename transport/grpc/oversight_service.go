package grpctransport

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// oversightBackend is what the oversight service needs of the coordinator
// (coordinator.Server).
type oversightBackend interface {
	ReviewSubject(ctx context.Context, version uint64) (coordinator.ReviewSubject, error)
	Approve(ctx context.Context, who coordinator.Reviewer, d coordinator.Decision) (coordinator.Review, error)
	Reject(ctx context.Context, who coordinator.Reviewer, d coordinator.Decision) (coordinator.Review, error)
}

// oversightService is the oversight service: approvers review a version and release or reject
// it with a decision their certificate's key signs.
type oversightService struct {
	pb.UnimplementedOversightServiceServer
	srv oversightBackend
}

// PrepareReview implements pb.OversightServiceServer: what an approver's decision on a version
// signs.
func (s *oversightService) PrepareReview(ctx context.Context, req *pb.PrepareReviewRequest) (*pb.PrepareReviewResponse, error) {
	subject, err := s.srv.ReviewSubject(ctx, req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PrepareReviewResponse{Version: subject.Version, ContentHash: subject.ContentHash, Status: subject.Status, Flagged: subject.Flagged}, nil
}

// ApproveModel implements pb.OversightServiceServer: the caller (an approver, by its
// certificate) releases a version, with a decision signed by that certificate's key.
func (s *oversightService) ApproveModel(ctx context.Context, req *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	r, err := s.srv.Approve(ctx, reviewer(ctx), decision(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return reviewResponse(req.GetVersion(), r), nil
}

// decision is a review request's signed decision.
func decision(req *pb.ReviewRequest) coordinator.Decision {
	return coordinator.Decision{Version: req.GetVersion(), Reason: req.GetReason(), Override: req.GetOverride(), ContentHash: req.GetContentHash(),
		Signature: pki.Signed{Certificate: req.GetCertificate(), Signature: req.GetSignature()}}
}

// RejectModel implements pb.OversightServiceServer.
func (s *oversightService) RejectModel(ctx context.Context, req *pb.ReviewRequest) (*pb.ReviewResponse, error) {
	if req.GetOverride() {
		return nil, status.Error(codes.InvalidArgument, "field override: only an approval overrides the fairness policy")
	}
	r, err := s.srv.Reject(ctx, reviewer(ctx), decision(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return reviewResponse(req.GetVersion(), r), nil
}

// reviewer is the caller as its certificate names it; without mutual TLS (--insecure) there is
// no identity, and the audit log says so.
func reviewer(ctx context.Context) coordinator.Reviewer {
	if id, ok := IdentityFromContext(ctx); ok {
		return coordinator.Reviewer{Name: id.Name, Role: string(id.Role)}
	}
	return coordinator.Reviewer{Name: "unauthenticated (insecure mode)", Role: "none"}
}

func reviewResponse(version uint64, r coordinator.Review) *pb.ReviewResponse {
	return &pb.ReviewResponse{Version: version, Status: r.Status, AuditSeq: r.Entry.Seq, AuditHash: r.Entry.Hash}
}
