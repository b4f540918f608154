package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/secagg"
)

// clientSecAggConfig is the client's side of secure aggregation.
type clientSecAggConfig struct {
	// Mode "he" makes the client refuse any task without the committee's public key, so it
	// never sends a plaintext sum; "none" accepts plaintext runs.
	Mode string `yaml:"mode"`
	// Member makes the client a committee member: it holds a share of the decryption key.
	Member bool `yaml:"member"`
	// MinContributors is the fewest results an aggregate must sum before this member helps
	// decrypt it (at least 2).
	MinContributors int `yaml:"min_contributors"`
	// Committee pins the committee this client encrypts for: with it, a task's collective key
	// must be endorsed by at least its threshold (and MinThreshold) of these members, in a
	// committee made of them alone. Needs the TLS kit's CA to check the endorsements.
	Committee    []string `yaml:"committee"`
	MinThreshold int      `yaml:"min_threshold"`
	// Parameters lists the parameter sets this client encrypts under and, as a member, makes
	// key material under (default: only "simulation"; add "key-recovery" to take part in
	// runs that chose the lighter set).
	Parameters []string `yaml:"parameters"`
	// StateDir keeps the identity key, key material and the client's privacy ledger (mode
	// 0600) across restarts; every client uses it for its ledger, members also for their keys.
	// Empty means fedprop-client-state/<id>.
	StateDir string `yaml:"state_dir"`
}

func (c clientSecAggConfig) validate() error {
	var errs []error
	if c.Mode != coordinator.SecAggNone && c.Mode != coordinator.SecAggHE {
		errs = append(errs, fmt.Errorf("secure_aggregation.mode: %q is not none or he", c.Mode))
	}
	if c.Member {
		if c.MinContributors < 2 {
			errs = append(errs, fmt.Errorf("secure_aggregation.min_contributors: must be at least 2, got %d", c.MinContributors))
		}
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("secure_aggregation.state_dir: required (the client's privacy ledger, and a member's key material, live there)"))
	}
	for _, name := range c.Parameters {
		if _, err := secagg.PresetLiteral(name); err != nil {
			errs = append(errs, fmt.Errorf("secure_aggregation.parameters: %q is not one of %v", name, secagg.Presets()))
		}
	}
	if len(c.Committee) > 0 && c.MinThreshold < 2 {
		errs = append(errs, fmt.Errorf("secure_aggregation.min_threshold: must be at least 2 with a pinned committee, got %d", c.MinThreshold))
	}
	if c.MinThreshold > len(c.Committee) && len(c.Committee) > 0 {
		errs = append(errs, fmt.Errorf("secure_aggregation.min_threshold: %d is more than the %d members of secure_aggregation.committee", c.MinThreshold, len(c.Committee)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	return nil
}

// sessionOptions builds the session's secure-aggregation parts.
func (c clientSecAggConfig) sessionOptions(floor privacy.Floor, kit pki.TLSFiles, log *slog.Logger) (client.SessionOptions, error) {
	opts := client.SessionOptions{RequireEncryption: c.Mode == coordinator.SecAggHE, Floor: floor, Parameters: c.Parameters}
	dir := client.StateDir(c.StateDir)
	saved, err := dir.Privacy()
	if err != nil {
		return opts, err
	}
	opts.PrivacyState, opts.PersistPrivacy = saved, dir.SavePrivacy
	if kit.Set() {
		// Every encrypted result is signed with the client's certificate key, so that committee
		// members can check an aggregate is the sum of what clients sent.
		if opts.Signer, err = pki.LoadSigner(kit); err != nil {
			return opts, err
		}
	}
	switch {
	case len(c.Committee) > 0 && !kit.Set():
		return opts, fmt.Errorf("%w: secure_aggregation.committee: checking the committee's endorsements needs the TLS kit's CA (tls.ca); this client dials in plaintext", coordinator.ErrBadConfig)
	case len(c.Committee) > 0:
		verifier, err := pki.LoadVerifier(kit.CA)
		if err != nil {
			return opts, err
		}
		opts.Committee = &client.CommitteePin{Members: c.Committee, MinThreshold: c.MinThreshold, Verifier: verifier}
	case c.Mode == coordinator.SecAggHE:
		log.Warn("no pinned committee (secure_aggregation.committee): this client encrypts under whatever collective key the coordinator hands it")
	}
	if !c.Member {
		return opts, nil
	}
	identity, err := dir.Identity()
	if err != nil {
		return opts, err
	}
	key, err := dir.Member()
	if err != nil {
		return opts, err
	}
	shares, err := dir.ShareLog()
	if err != nil {
		return opts, err
	}
	mc := client.MemberConfig{MinContributors: c.MinContributors, Identity: identity, Saved: key, Persist: dir.SaveMember, Floor: floor,
		ShareLog: shares, LogShare: dir.AppendShare, Parameters: c.Parameters}
	if kit.Set() {
		// The member vouches for its identity key with its own certificate and checks every
		// other member's: a coordinator cannot slip in a key of its own.
		mc.Signer = opts.Signer
		if mc.Verifier, err = pki.LoadVerifier(kit.CA); err != nil {
			return opts, err
		}
	} else {
		log.Warn("committee member without a TLS kit: it cannot check the other members' identity keys, so the coordinator's roster is taken on trust")
	}
	m, err := client.NewMember(mc)
	if err != nil {
		return opts, err
	}
	opts.Member = m
	return opts, nil
}
