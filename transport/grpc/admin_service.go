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
	ListRuns(ctx context.Context) ([]coordinator.RunInfo, error)
	StopRun(ctx context.Context, id, reason string) (coordinator.RunInfo, error)
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
	return runMessage(info), nil
}

// ListRuns implements pb.AdminServiceServer.
func (s *adminService) ListRuns(ctx context.Context, _ *pb.ListRunsRequest) (*pb.ListRunsResponse, error) {
	infos, err := s.srv.ListRuns(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListRunsResponse{Runs: make([]*pb.Run, len(infos))}
	for i, info := range infos {
		out.Runs[i] = runMessage(info)
	}
	return out, nil
}

// StopRun implements pb.AdminServiceServer.
func (s *adminService) StopRun(ctx context.Context, req *pb.StopRunRequest) (*pb.Run, error) {
	if req.GetRunId() == "" {
		return nil, status.Error(codes.InvalidArgument, "field run_id: empty: name the run to stop")
	}
	info, err := s.srv.StopRun(ctx, req.GetRunId(), req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	return runMessage(info), nil
}

// runMessage is a run as the admin service reports it.
func runMessage(info coordinator.RunInfo) *pb.Run {
	st := info.State
	r := &pb.Run{
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
		MinClients:        int32(st.Config.MinClients),
		PrivacyMechanism:  st.Config.Privacy.Mechanism,
		EpsilonBudget:     st.Config.Privacy.Epsilon,
		Active:            info.Active,
	}
	if r.PrivacyMechanism == "" {
		r.PrivacyMechanism = coordinator.DPNone
	}
	if ps := st.Privacy; ps != nil {
		r.Epsilon, r.Delta = ps.Epsilon, ps.Delta
	}
	if info.Active {
		p := info.Progress
		r.Phase, r.Round = p.Phase, int32(p.Round)
		r.Cohort, r.Results, r.Outstanding = int32(p.Cohort), int32(p.Results), int32(p.Outstanding)
		r.DeadlineMillis = info.Deadline.Milliseconds()
	}
	return r
}
