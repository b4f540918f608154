package loadtest

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/synth"
)

// coordinatorName is the load test coordinator's certificate name.
const coordinatorName = "loadtest-coordinator"

// writeKits makes a throwaway CA and writes into dir the coordinator's kit and one client kit
// per synthetic branch, named as the branch (the coordinator checks that a client acts only
// as the name its certificate carries): what `fedprop ca init` and `fedprop ca issue` would
// give a deployment, with no manual step. The CA's key stays in memory and is dropped.
func writeKits(dir string, cfg Config) error {
	ca, err := pki.NewCA(pki.InitOptions{Name: "fedprop loadtest"})
	if err != nil {
		return fmt.Errorf("load test CA: %w", err)
	}
	issue := func(role pki.Role, name string) error {
		cred, err := ca.Issue(pki.IssueRequest{Role: role, Name: name})
		if err != nil {
			return fmt.Errorf("load test kit for %s: %w", name, err)
		}
		if _, err := ca.WriteKit(dir, cred); err != nil {
			return fmt.Errorf("load test kit for %s: %w", name, err)
		}
		return nil
	}
	if err := issue(pki.RoleCoordinator, coordinatorName); err != nil {
		return err
	}
	sc := cfg.synthConfig()
	for b := range cfg.Clients {
		if err := issue(pki.RoleClient, synth.BranchName(sc, b)); err != nil {
			return err
		}
	}
	return nil
}

// serverTLS is the coordinator's side of mutual TLS from the kits in dir.
func serverTLS(dir string) (*tls.Config, error) {
	c, err := pki.ServerTLSConfig(pki.KitFiles(dir, coordinatorName))
	if err != nil {
		return nil, fmt.Errorf("load test coordinator TLS: %w", err)
	}
	return c, nil
}

// makeKitDir returns dir, or a new temporary directory (and a function removing it) when dir
// is empty.
func makeKitDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "fedprop-loadtest-kits-")
	if err != nil {
		return "", nil, fmt.Errorf("load test kits: %w", err)
	}
	return tmp, func() { _ = os.RemoveAll(tmp) }, nil
}
