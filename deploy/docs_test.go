package deploy

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestDesignReferencesExist: every Go file and every test that
// docs/DESIGN.md names exists, so the design's "enforced" and "tested"
// lists cannot silently point at code that was renamed or removed.
func TestDesignReferencesExist(t *testing.T) {
	doc := readFile(t, "../docs/DESIGN.md")
	tests := definedTests(t)
	files := regexp.MustCompile("`([a-z0-9_/]+\\.go)`").FindAllStringSubmatch(doc, -1)
	dirs := regexp.MustCompile("`((?:cmd|ingest|spool|deliver|checkpoint|internal)(?:/[a-z0-9_]+)*)`").FindAllStringSubmatch(doc, -1)
	names := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllStringSubmatch(doc, -1)
	if len(files) < 10 || len(names) < 20 {
		t.Fatalf("docs/DESIGN.md names only %d files and %d tests", len(files), len(names))
	}
	for _, m := range append(files, dirs...) {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("docs/DESIGN.md names %s, which does not exist", m[1])
		}
	}
	for _, m := range names {
		if !tests[m[1]] {
			t.Errorf("docs/DESIGN.md names %s, which no _test.go file defines", m[1])
		}
	}
	// The seven invariants, each with where it is enforced and tested.
	for i := 1; i <= 7; i++ {
		sec := regexp.MustCompile(`(?s)\n### ` + string(rune('0'+i)) + `\. (.*?)(\n### |\n## )`).FindStringSubmatch(doc)
		if sec == nil || !strings.Contains(sec[1], "- Enforced:") || !strings.Contains(sec[1], "- Tested:") {
			t.Errorf("docs/DESIGN.md: invariant %d lacks its section, or its Enforced or Tested list", i)
		}
	}
}

// definedTests: the Test and Fuzz functions of every _test.go file in the
// repository (both modules).
func definedTests(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]+)\(`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skipDir(d.Name()) && path != ".." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			for _, m := range re.FindAllStringSubmatch(readFile(t, path), -1) {
				out[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func skipDir(name string) bool {
	return name == ".git" || name == ".cache" || name == "bin" || name == "dist" || name == "node_modules"
}

// TestNoReferencesOutsideRepo: nothing in the repository points at paths
// outside it (a clone has only itself) or at issue numbers of a tracker a
// reader cannot see. This file is the one exception: it spells the patterns.
func TestNoReferencesOutsideRepo(t *testing.T) {
	bad := []*regexp.Regexp{
		regexp.MustCompile(`\.\./shared\b|\bshared/(DESIGN|STYLE)\.md`),
		regexp.MustCompile(`/work/(shared|main|wt|notes)\b`),
		regexp.MustCompile(`(?i)\bissues? ?#?[0-9]+\b`),
		regexp.MustCompile(`(?i)\b(see|in|from|per|fixes|closes) #[0-9]+\b`),
	}
	self, _ := filepath.Abs("docs_test.go")
	checked := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(d.Name()) && path != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == ".git" {
			return nil // a worktree's pointer to its repository
		}
		if abs, _ := filepath.Abs(path); abs == self {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > 4<<20 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if slices.Contains(b[:min(len(b), 8000)], 0) {
			return nil // binary
		}
		checked++
		for n, line := range strings.Split(string(b), "\n") {
			for _, re := range bad {
				if m := re.FindString(line); m != "" {
					t.Errorf("%s:%d: %q points outside the repository: %s", path, n+1, m, strings.TrimSpace(line))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files", checked)
	}
}

// sdkActions maps the aliyun-log-go-sdk client methods that talk to SLS
// for consumption to the RAM action each needs (SLS's API reference,
// "Authorization information" of each operation).
var sdkActions = map[string]string{
	"CreateConsumerGroup":   "log:CreateConsumerGroup",
	"UpdateConsumerGroup":   "log:UpdateConsumerGroup",
	"DeleteConsumerGroup":   "log:DeleteConsumerGroup",
	"ListConsumerGroup":     "log:ListConsumerGroup",
	"HeartBeat":             "log:ConsumerGroupHeartBeat",
	"GetCheckpoint":         "log:GetConsumerGroupCheckPoint",
	"UpdateCheckpoint":      "log:ConsumerGroupUpdateCheckPoint",
	"GetCursor":             "log:GetCursorOrData",
	"GetCursorTime":         "log:GetCursorOrData",
	"GetPrevCursorTime":     "log:GetCursorOrData",
	"PullLogs":              "log:GetCursorOrData",
	"PullLogsV2":            "log:GetCursorOrData",
	"PullLogsWithQuery":     "log:GetCursorOrData",
	"GetLogsBytes":          "log:GetCursorOrData",
	"GetLogsBytesV2":        "log:GetCursorOrData",
	"GetLogsBytesWithQuery": "log:GetCursorOrData",
	"ListShards":            "log:ListShards",
	"GetLogStore":           "log:GetLogStore",
	"GetLogs":               "log:GetLogStoreLogs",
	"GetLogsV2":             "log:GetLogStoreLogs",
}

const sdkConsumerPkg = "github.com/aliyun/aliyun-log-go-sdk/consumer"

// relaySDKCalls: the SDK methods of sdkActions called by the code linked
// into the relay: this module's packages except the SLS emulator, plus the
// SDK's consumer library when the relay links it (its calls are made on
// the relay's behalf).
func relaySDKCalls(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if or .Module.Main (eq .ImportPath "`+sdkConsumerPkg+`")}}{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .GoFiles " "}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/slsrelay")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	calls := map[string][]string{} // method → where
	fset := token.NewFileSet()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 || f[0] == "slsrelay/ingest/slstest" || strings.HasPrefix(f[0], "slsrelay/ingest/slstest/") {
			continue
		}
		for _, name := range strings.Fields(f[2]) {
			file, err := parser.ParseFile(fset, filepath.Join(f[1], name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
						if _, known := sdkActions[sel.Sel.Name]; known {
							calls[sel.Sel.Name] = append(calls[sel.Sel.Name], f[0]+"/"+name)
						}
					}
				}
				return true
			})
		}
	}
	return calls
}

// TestRAMPolicyMatchesSDKCalls: the RAM policy in docs/DEPLOY.md allows
// every action the relay's SLS calls need and nothing else, and the
// document's table of calls agrees with sdkActions.
func TestRAMPolicyMatchesSDKCalls(t *testing.T) {
	doc := readFile(t, "../docs/DEPLOY.md")
	sec := regexp.MustCompile("(?s)\n## RAM policy\n.*?```json\n(.*?)```").FindStringSubmatch(doc)
	if sec == nil {
		t.Fatal("docs/DEPLOY.md has no ```json block under \"## RAM policy\"")
	}
	var policy struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   []string
			Resource []string
		}
	}
	dec := json.NewDecoder(strings.NewReader(sec[1]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&policy); err != nil {
		t.Fatalf("docs/DEPLOY.md RAM policy is not a policy document: %v", err)
	}
	if policy.Version != "1" || len(policy.Statement) == 0 {
		t.Fatalf("RAM policy: Version %q, %d statements", policy.Version, len(policy.Statement))
	}
	allowed := map[string]bool{}
	for _, st := range policy.Statement {
		if st.Effect != "Allow" || len(st.Resource) == 0 {
			t.Errorf("RAM policy statement %v: want Effect Allow and a Resource", st)
		}
		for _, r := range st.Resource {
			if !strings.HasPrefix(r, "acs:log:") || strings.HasSuffix(r, ":*") {
				t.Errorf("RAM policy resource %q: want a project/logstore resource, not everything", r)
			}
		}
		for _, a := range st.Action {
			allowed[a] = true
		}
	}

	calls := relaySDKCalls(t)
	if len(calls) < 3 {
		t.Fatalf("found only %v SDK calls in the relay: is the scanner broken?", calls)
	}
	needed := map[string]bool{}
	for m, where := range calls {
		a := sdkActions[m]
		needed[a] = true
		if !allowed[a] {
			t.Errorf("the relay calls %s (%s) but the RAM policy does not allow %s", m, strings.Join(where, ", "), a)
		}
	}
	for a := range allowed {
		if !needed[a] {
			t.Errorf("the RAM policy allows %s, which no SLS call of the relay needs (least privilege)", a)
		}
	}

	// The table: `Method`[, `Method`…] | `log:Action`.
	rows := regexp.MustCompile("(?m)^\\| ((?:`[A-Za-z]+`(?:, )?)+) \\| `(log:[A-Za-z]+)` \\|$").FindAllStringSubmatch(doc, -1)
	if len(rows) == 0 {
		t.Fatal("docs/DEPLOY.md has no table of SDK calls and actions")
	}
	var inTable []string
	for _, r := range rows {
		for _, m := range regexp.MustCompile("`([A-Za-z]+)`").FindAllStringSubmatch(r[1], -1) {
			inTable = append(inTable, m[1])
			if sdkActions[m[1]] != r[2] {
				t.Errorf("docs/DEPLOY.md maps %s to %s; it needs %q", m[1], r[2], sdkActions[m[1]])
			}
		}
	}
	var called []string
	for m := range calls {
		called = append(called, m)
		if !slices.Contains(inTable, m) {
			t.Errorf("docs/DEPLOY.md's table lacks %s, which the relay calls", m)
		}
	}
	sort.Strings(called)
	t.Logf("SLS calls of the relay: %v", called)
}

// TestReadmeQuickStartAndInstall: the quick start stays the two commands,
// and the Install section covers the four ways to run the relay, each
// pointing at a file that exists.
func TestReadmeQuickStartAndInstall(t *testing.T) {
	readme := readFile(t, "../README.md")
	qs := regexp.MustCompile("(?s)\n## Quick start\n.*?```sh\n(.*?)```").FindStringSubmatch(readme)
	if qs == nil {
		t.Fatal("README has no sh block under ## Quick start")
	}
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(qs[1]), "\n") {
		cmd, _, _ := strings.Cut(l, "#")
		cmds = append(cmds, strings.TrimSpace(cmd))
	}
	if !slices.Equal(cmds, []string{"make demo", "make test"}) {
		t.Errorf("README quick start is %q, want exactly make demo and make test", cmds)
	}
	inst := regexp.MustCompile(`(?s)\n## Install\n(.*?)\n## `).FindStringSubmatch(readme)
	if inst == nil {
		t.Fatal("README has no ## Install section")
	}
	for _, want := range []string{"**Binary**", "**Container**", "**systemd**", "**Kubernetes**"} {
		if !strings.Contains(inst[1], want) {
			t.Errorf("README Install lacks %s", want)
		}
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)\)`).FindAllStringSubmatch(readme, -1) {
		if strings.Contains(m[1], "://") {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("README links %s, which does not exist in the repository", m[1])
		}
	}
}
