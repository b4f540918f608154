package grpctransport

import (
	"bytes"
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
)

// modelBackend is what the model service needs of the coordinator (coordinator.Server).
type modelBackend interface {
	Store() coordinator.Records
	Status(version uint64) coordinator.Review
	ReleasedVersion(ctx context.Context, version uint64, candidate bool) (uint64, error)
	ModelDocument(ctx context.Context, version uint64) (*modelfile.Document, error)
	ModelCard(ctx context.Context, version uint64) (*modelcard.Card, error)
}

// modelService is the model service: model owners list versions and pull released ones, with
// their cards.
type modelService struct {
	pb.UnimplementedModelServiceServer
	srv modelBackend
}

// ListModels implements pb.ModelServiceServer.
func (s *modelService) ListModels(ctx context.Context, _ *pb.ListModelsRequest) (*pb.ListModelsResponse, error) {
	versions, err := s.srv.Store().Versions(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListModelsResponse{}
	for _, v := range versions {
		m := &pb.ModelSummary{Version: v.Version, RunId: v.RunID, Round: int32(v.Round), CreatedUnixMillis: v.Created.UnixMilli(), Status: s.srv.Status(v.Version).Status}
		if v.Evaluation != nil {
			m.Auc, m.LogLoss, m.Accuracy = v.Evaluation.AUC, v.Evaluation.LogLoss, v.Evaluation.Accuracy
		}
		out.Models = append(out.Models, m)
	}
	return out, nil
}

// GetModel implements pb.ModelServiceServer: the JSON model document in chunks.
func (s *modelService) GetModel(req *pb.GetModelRequest, stream pb.ModelService_GetModelServer) error {
	version, err := s.srv.ReleasedVersion(stream.Context(), req.GetVersion(), req.GetCandidate())
	if err != nil {
		return toStatus(err)
	}
	doc, err := s.srv.ModelDocument(stream.Context(), version)
	if err != nil {
		return toStatus(err)
	}
	var buf bytes.Buffer
	if err := doc.Write(&buf); err != nil {
		return status.Errorf(codes.Internal, "encode model %d: %v", doc.Version, err)
	}
	data := buf.Bytes()
	for off := 0; off < len(data) || off == 0; off += ModelChunkSize {
		end := min(off+ModelChunkSize, len(data))
		if err := stream.Send(&pb.ModelChunk{Version: doc.Version, Data: data[off:end], TotalBytes: int64(len(data))}); err != nil {
			return err
		}
		if end == len(data) {
			break
		}
	}
	return nil
}

// GetModelCard implements pb.ModelServiceServer: the version's model card as JSON.
func (s *modelService) GetModelCard(ctx context.Context, req *pb.GetModelCardRequest) (*pb.ModelCard, error) {
	card, err := s.srv.ModelCard(ctx, req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	var buf bytes.Buffer
	if err := card.Write(&buf); err != nil {
		return nil, status.Errorf(codes.Internal, "encode card: %v", err)
	}
	return &pb.ModelCard{Version: card.Model.Version, Json: buf.Bytes()}, nil
}
