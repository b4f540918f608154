package grpctransport

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// adminBackend is what the admin service needs of the coordinator (coordinator.Server).
type adminBackend interface {
	StartRun(ctx context.Context, spec coordinator.RunSpec) error
	GetRun(ctx context.Context, id string) (coordinator.RunInfo, error)
}

// adminService is the admin service: operators start runs and read their state.
type adminService struct {
	pb.UnimplementedAdminServiceServer
	srv      adminBackend
	loadSpec SpecLoader
}

// StartRun implements pb.AdminServiceServer.
func (s *adminService) StartRun(ctx context.Context, req *pb.StartRunRequest) (*pb.StartRunResponse, error) {
	if s.loadSpec == nil {
		return nil, status.Error(codes.Unimplemented, "this coordinator does not accept runs over the admin service")
	}
	spec, err := s.loadSpec(req.GetConfigYaml())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "field config_yaml: "+err.Error())
	}
	if err := s.srv.StartRun(ctx, spec); err != nil {
		return nil, toStatus(err)
	}
	return &pb.StartRunResponse{RunId: spec.Config.ID}, nil
}

// GetRun implements pb.AdminServiceServer.
func (s *adminService) GetRun(ctx context.Context, req *pb.GetRunRequest) (*pb.Run, error) {
	info, err := s.srv.GetRun(ctx, req.GetRunId())
	if err != nil {
		return nil, toStatus(err)
	}
	st := info.State
	return &pb.Run{
		RunId:             st.ID,
		State:             string(st.Status),
		RoundsTotal:       int32(st.Config.Rounds),
		RoundsCommitted:   int32(st.LastRound),
		LatestVersion:     st.LatestVersion,
		RegisteredClients: int32(info.Registered),
		Message:           st.Message,
		ConsentTracked:    st.ConsentTracked,
		ExcludedNoConsent: int64(st.ExcludedNoConsent),
		TrainingExamples:  int64(st.StatsRecords),
	}, nil
}
