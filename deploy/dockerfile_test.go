package deploy

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions (comments and
// parser directives dropped, backslash continuations joined) and stages
// (a new one at every FROM).
func parseDockerfile(t *testing.T, text string) [][]instruction {
	t.Helper()
	var stages [][]instruction
	sc := bufio.NewScanner(strings.NewReader(text))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends inside a continued line")
	}
	return stages
}

func find(stage []instruction, cmd string) []instruction {
	var out []instruction
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// TestDockerfile checks the image's rules (hadolint is not packaged for
// this machine's registries; make lint runs it where it is installed):
// multi-stage, a distroless or scratch base with CA certificates and
// tzdata, a non-root user, the spool volume, the config path the relay
// is started with, the metrics port of the Kubernetes config, SIGTERM as
// the stop signal, version/commit/date build args stamped into the
// variables the code has, and the OCI labels.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, readFile(t, "../Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The build stage: the Go toolchain image at go.mod's Go version.
	if !regexp.MustCompile(`golang:\$\{GO_VERSION\}`).MatchString(build[0].args) {
		t.Errorf("build stage FROM %q: want the golang image at ${GO_VERSION}", build[0].args)
	}
	goMod := readFile(t, "../go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(goMod)
	if goVer == nil || !strings.Contains(readFile(t, "../Dockerfile"), "ARG GO_VERSION="+goVer[1]) {
		t.Errorf("Dockerfile: want ARG GO_VERSION=%v (go.mod's go line)", goVer)
	}

	// The runtime base: distroless (CA certificates and tzdata included), or
	// scratch with both copied in.
	base := final[0].args
	switch {
	case strings.Contains(base, "gcr.io/distroless/static") || strings.Contains(base, "gcr.io/distroless/base"):
	case strings.HasPrefix(base, "scratch"):
		var copies string
		for _, c := range find(final, "COPY") {
			copies += c.args + "\n"
		}
		for _, want := range []string{"ca-certificates.crt", "zoneinfo"} {
			if !strings.Contains(copies, want) {
				t.Errorf("scratch image does not copy %s", want)
			}
		}
	default:
		t.Errorf("runtime stage FROM %q: want gcr.io/distroless/static… or scratch", base)
	}

	// Non-root: the last USER of the final stage, numeric so that
	// Kubernetes' runAsNonRoot can check it.
	users := find(final, "USER")
	if len(users) == 0 {
		t.Fatal("runtime stage has no USER: it would run as root")
	}
	user := users[len(users)-1].args
	uid, _, _ := strings.Cut(user, ":")
	if uid == "0" || uid == "root" || !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) {
		t.Errorf("USER %q: want a numeric non-root uid", user)
	}

	// The spool volume, owned by that user.
	vol := find(final, "VOLUME")
	if len(vol) == 0 || !strings.Contains(vol[0].args, "/var/lib/slsrelay") {
		t.Errorf("VOLUME %v: want /var/lib/slsrelay", vol)
	}
	owned := false
	for _, c := range find(final, "COPY") {
		if strings.Contains(c.args, "--chown="+user) && strings.HasSuffix(c.args, " /var/lib/slsrelay") {
			owned = true
		}
	}
	if !owned {
		t.Errorf("/var/lib/slsrelay is not created owned by %s (COPY --chown=%s … /var/lib/slsrelay)", user, user)
	}

	// Started as: slsrelay run --config /etc/slsrelay/relay.yaml.
	cmdline := ""
	for _, c := range append(find(final, "ENTRYPOINT"), find(final, "CMD")...) {
		cmdline += c.args + " "
	}
	for _, want := range []string{`"/usr/local/bin/slsrelay"`, `"run"`, `"--config"`, `"/etc/slsrelay/relay.yaml"`} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("ENTRYPOINT/CMD %s: lacks %s", cmdline, want)
		}
	}

	// The metrics port: the one the Kubernetes config listens on.
	port := k8sMetricsPort(t)
	expose := find(final, "EXPOSE")
	if len(expose) != 1 || strings.TrimSuffix(expose[0].args, "/tcp") != port {
		t.Errorf("EXPOSE %v: want the metrics port %s", expose, port)
	}

	if ss := find(final, "STOPSIGNAL"); len(ss) != 1 || ss[0].args != "SIGTERM" {
		t.Errorf("STOPSIGNAL %v: want SIGTERM", ss)
	}

	// version, commit and date: build args stamped into the variables the
	// code has.
	c := loadCode(t)
	var buildRun string
	for _, r := range find(build, "RUN") {
		if strings.Contains(r.args, "go build") {
			buildRun = r.args
		}
	}
	for _, v := range []struct{ arg, variable string }{{"VERSION", "version"}, {"COMMIT", "commit"}, {"DATE", "date"}} {
		hasArg := false
		for _, a := range find(build, "ARG") {
			if a.args == v.arg || strings.HasPrefix(a.args, v.arg+"=") {
				hasArg = true
			}
		}
		if !hasArg {
			t.Errorf("build stage has no ARG %s", v.arg)
		}
		if !strings.Contains(buildRun, "-X main."+v.variable+"=${"+v.arg+"}") {
			t.Errorf("go build does not stamp -X main.%s=${%s}: %s", v.variable, v.arg, buildRun)
		}
		if !c.vars[v.variable] {
			t.Errorf("cmd/slsrelay has no variable %s for -X main.%s", v.variable, v.variable)
		}
	}
	if !strings.Contains(buildRun, "CGO_ENABLED=0") {
		t.Errorf("go build without CGO_ENABLED=0: the binary would need libc, which the static base lacks")
	}

	// OCI labels.
	var labels string
	for _, l := range find(final, "LABEL") {
		labels += l.args + " "
	}
	for _, k := range []string{"title", "description", "licenses", "version", "revision", "created"} {
		if !strings.Contains(labels, "org.opencontainers.image."+k+"=") {
			t.Errorf("no LABEL org.opencontainers.image.%s", k)
		}
	}
	if !strings.Contains(labels, `org.opencontainers.image.licenses="Apache-2.0"`) {
		t.Errorf("licences label is not Apache-2.0 (LICENSE)")
	}
}

// TestDockerignoreKeepsTheBuild: no file the relay's build needs (the
// non-test Go files of every package of this module cmd/slsrelay links,
// go.mod, go.sum, and what the Dockerfile copies) is excluded from the
// build context by .dockerignore.
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(readFile(t, "../.dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Fatalf(".dockerignore: exceptions (%s) are not understood by this test", l)
			}
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	ignored := func(path string) string {
		for _, p := range patterns {
			if dockerMatch(p, path) {
				return p
			}
		}
		return ""
	}
	list := exec.Command("go", "list", "-deps", "-f", `{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`, "./cmd/slsrelay")
	list.Dir = ".." // the relay's module
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := filepath.Abs("..")
	need := []string{"go.mod", "go.sum", "LICENSE", "docs/THIRD_PARTY.md"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, filepath.ToSlash(rel))
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		if p := ignored(f); p != "" {
			t.Errorf(".dockerignore pattern %q excludes %s, which the image's build needs", p, f)
		}
	}
}

// dockerMatch is .dockerignore's matching: filepath.Match per path
// element, "**" for any number of elements, and a pattern matching a
// directory excludes everything under it.
func dockerMatch(pattern, path string) bool {
	pp := strings.Split(pattern, "/")
	el := strings.Split(path, "/")
	var match func(pp, el []string) bool
	match = func(pp, el []string) bool {
		if len(pp) == 0 {
			return true // the pattern matched a parent directory
		}
		if len(el) == 0 {
			return false
		}
		if pp[0] == "**" {
			for i := 0; i <= len(el); i++ {
				if match(pp[1:], el[i:]) {
					return true
				}
			}
			return false
		}
		if ok, _ := filepath.Match(pp[0], el[0]); !ok {
			return false
		}
		return match(pp[1:], el[1:])
	}
	return match(pp, el)
}

func TestDockerMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"bench", "bench/cmd/slsbench/main.go", true},
		{"**/*_test.go", "spool/spool_test.go", true},
		{"**/*_test.go", "spool/spool.go", false},
		{"docs/*.png", "docs/perf-drain.png", true},
		{"docs/*.png", "docs/THIRD_PARTY.md", false},
		{"testdata", "ingest/slstest/testdata/x", false},
		{".git", ".gitignore", false},
	} {
		if got := dockerMatch(tc.pattern, tc.path); got != tc.want {
			t.Errorf("dockerMatch(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
