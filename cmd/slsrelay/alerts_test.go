package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Every slsrelay_* metric the shipped alert rules use is one the relay
// exports (promtool test rules, run by make test, checks their logic).
func TestAlerts_UseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 256)
	relayCollector{}.describeAll(ch)
	close(ch)
	var known []string
	for d := range ch {
		known = append(known, d.String())
	}
	all := strings.Join(known, "\n")
	for _, name := range regexp.MustCompile(`slsrelay_[a-z_]+`).FindAllString(string(raw), -1) {
		if !strings.Contains(all, `fqName: "`+name+`"`) {
			t.Errorf("alerts.yaml uses %s, which the relay does not export", name)
		}
	}
}
