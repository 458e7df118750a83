package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitPath = "systemd/slsrelay.service"

// parseUnit reads a unit file into section → key → values (a key may
// repeat), following systemd's syntax for comments and continuations.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	var cont string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont = strings.TrimSuffix(line, "\\")
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value in a section: %q", unitPath, n, line)
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return u
}

// systemdDuration parses systemd's time spans: "45", "45s", "1min 30s",
// "2m", "500ms".
func systemdDuration(s string) (time.Duration, error) {
	units := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"ms": time.Millisecond, "msec": time.Millisecond, "m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour}
	re := regexp.MustCompile(`^\s*([0-9]+)\s*([a-z]*)`)
	var total time.Duration
	rest := s
	for strings.TrimSpace(rest) != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, strconv.ErrSyntax
		}
		u, ok := units[m[2]]
		if !ok {
			return 0, strconv.ErrSyntax
		}
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * u
		rest = rest[len(m[0]):]
	}
	return total, nil
}

// TestSystemdUnit checks the unit's contract with the relay: started as
// `run --config /etc/slsrelay/relay.yaml`, state in StateDirectory=slsrelay
// (the data_dir /var/lib/slsrelay), secrets from an EnvironmentFile, a stop
// timeout above the code's default shutdown_timeout, restart on failure
// with a delay and a start limit, and the hardening.
func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, readFile(t, unitPath))
	svc := u["Service"]
	if svc == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatalf("%s: want [Unit], [Service] and [Install]", unitPath)
	}
	get := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	want := map[string]string{
		"StateDirectory":  "slsrelay",
		"Restart":         "on-failure",
		"KillSignal":      "SIGTERM",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"ExecStart":       "/usr/local/bin/slsrelay run --config /etc/slsrelay/relay.yaml",
	}
	for k, v := range want {
		if got := get(k); got != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if get("EnvironmentFile") == "" {
		t.Error("[Service] has no EnvironmentFile= for the secrets")
	}
	if get("DynamicUser") != "yes" && get("User") == "" {
		t.Error("[Service] runs as root: want DynamicUser=yes or a dedicated User=")
	}
	if !strings.Contains(" "+strings.Join(svc["ReadWritePaths"], " ")+" ", " /var/lib/slsrelay ") {
		t.Errorf("[Service] ReadWritePaths=%v lacks the state directory /var/lib/slsrelay", svc["ReadWritePaths"])
	}
	// The state directory is the data_dir the documented config uses.
	if ex := readFile(t, "../testdata/relay.example.yaml"); !strings.Contains(ex, "\ndata_dir: /var/lib/slsrelay\n") {
		t.Error("testdata/relay.example.yaml's data_dir is not /var/lib/slsrelay, the unit's StateDirectory")
	}

	stop, err := systemdDuration(get("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("[Service] TimeoutStopSec=%q: %v", get("TimeoutStopSec"), err)
	}
	if def := loadCode(t).duration(t, "DefaultShutdownTimeout"); stop <= def {
		t.Errorf("TimeoutStopSec %v is not above the default shutdown_timeout %v", stop, def)
	}
	if d, err := systemdDuration(get("RestartSec")); err != nil || d <= 0 {
		t.Errorf("[Service] RestartSec=%q: want a delay between restarts", get("RestartSec"))
	}
	if len(u["Unit"]["StartLimitBurst"]) == 0 || len(u["Unit"]["StartLimitIntervalSec"]) == 0 {
		t.Error("[Unit] has no StartLimitIntervalSec/StartLimitBurst: a failing relay would restart forever")
	}
}

func TestSystemdDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"45": 45 * time.Second, "45s": 45 * time.Second, "1min 30s": 90 * time.Second, "2m": 2 * time.Minute, "500ms": 500 * time.Millisecond} {
		if got, err := systemdDuration(in); err != nil || got != want {
			t.Errorf("systemdDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := systemdDuration("soon"); err == nil {
		t.Error("systemdDuration(\"soon\") accepted")
	}
}

// TestSystemdUnitVerify runs systemd-analyze verify on the unit, with the
// relay's path pointed at a real build (verify checks that ExecStart's
// program exists). Any output (an unknown key, a bad value, a missing
// program) fails the test. Without systemd-analyze it skips with a
// message, except under CI=true (.ci/run installs systemd).
func TestSystemdUnitVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found under CI=true: .ci/run installs the systemd package")
		}
		t.Skip("systemd-analyze not installed (Debian package systemd): unit not verified")
	}
	bin, err := filepath.Abs(relayBin(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(readFile(t, unitPath), "/usr/local/bin/slsrelay", bin)
	unit := filepath.Join(dir, "slsrelay.service")
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
}
