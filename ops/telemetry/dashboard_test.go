package telemetry_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/ops/telemetry"
)

// dashboardPanel is what the test reads of a Grafana panel: its queries, and the panels of a
// row.
type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// fedpropName finds the fedprop metric names in a PromQL expression.
var fedpropName = regexp.MustCompile(`\bfedprop_[a-z0-9_]+`)

// TestDashboardQueriesOnlyMetricsThatExist loads grafana/coordinator.json and checks each name
// its PromQL expressions use against the coordinator's registry, so that renaming a metric
// breaks this test rather than a panel; and that every coordinator metric has a panel.
func TestDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "grafana", "coordinator.json"))
	require.NoError(t, err)
	var dash struct {
		Title  string           `json:"title"`
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	assert.NotEmpty(t, dash.Title)
	assert.NotEmpty(t, dash.UID)

	m := telemetry.NewCoordinatorMetrics()
	touchAll(m)
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	exists := map[string]bool{}
	var ours []string
	for _, mf := range mfs {
		name := mf.GetName()
		exists[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				exists[name+suffix] = true
			}
		}
		if strings.HasPrefix(name, "fedprop_coordinator_") {
			ours = append(ours, name)
		}
	}
	require.NotEmpty(t, ours)

	used := map[string]bool{}
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			assert.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, target := range p.Targets {
				names := fedpropName.FindAllString(target.Expr, -1)
				assert.NotEmpty(t, names, "panel %q: %q queries no fedprop metric", p.Title, target.Expr)
				for _, n := range names {
					assert.True(t, exists[n], "panel %q queries %s, which the registry does not have", p.Title, n)
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
				}
			}
		}
	}
	walk(dash.Panels)
	for _, name := range ours {
		assert.True(t, used[name], "no panel shows %s", name)
	}
}
