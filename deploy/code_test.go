package deploy

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The relay's command package, relative to this directory.
const cmdDir = "../cmd/slsrelay"

// relayCode is what the tests read from cmd/slsrelay's sources: its
// constants (type-checked, so DefaultShutdownTimeout is the value the code
// uses, whatever expression spells it) and its string literals.
type relayCode struct {
	consts   map[string]constant.Value
	literals map[string]bool
	vars     map[string]bool // package-level variables
}

var (
	codeOnce sync.Once
	code     relayCode
	codeErr  error
)

func loadCode(t *testing.T) relayCode {
	t.Helper()
	codeOnce.Do(func() { code, codeErr = parseRelayCode() })
	if codeErr != nil {
		t.Fatalf("read %s: %v", cmdDir, codeErr)
	}
	return code
}

func parseRelayCode() (relayCode, error) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(cmdDir, "*.go"))
	if err != nil {
		return relayCode{}, err
	}
	c := relayCode{consts: map[string]constant.Value{}, literals: map[string]bool{}, vars: map[string]bool{}}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return relayCode{}, err
		}
		files = append(files, f)
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					c.literals[s] = true
				}
			}
			return true
		})
	}
	if len(files) == 0 {
		return relayCode{}, errors.New("no Go files")
	}
	// Type-check for the constants' values. The defaults are built from
	// plain numbers, strings and time's units, so the importer gives time
	// its Duration and units (the same values as the real package) and
	// every other import an empty package; the errors that leaves in the
	// rest of the code are ignored. (Type-checking the real imports from
	// source would take most of a minute on a small machine.)
	conf := types.Config{Importer: stubImporter{}, Error: func(error) {}}
	pkg, _ := conf.Check("slsrelay/cmd/slsrelay", fset, files, nil)
	if pkg == nil {
		return relayCode{}, errors.New("type-check returned no package")
	}
	for _, name := range pkg.Scope().Names() {
		switch o := pkg.Scope().Lookup(name).(type) {
		case *types.Const:
			c.consts[name] = o.Val()
		case *types.Var:
			c.vars[name] = true
		}
	}
	return c, nil
}

// stubImporter: time's Duration and units, every other package empty.
type stubImporter struct{}

func (stubImporter) Import(path string) (*types.Package, error) {
	name := path[strings.LastIndex(path, "/")+1:]
	if i := strings.Index(name, "."); i > 0 { // gopkg.in/yaml.v3
		name = name[:i]
	}
	pkg := types.NewPackage(path, name)
	if path == "time" {
		dur := types.NewNamed(types.NewTypeName(token.NoPos, pkg, "Duration", nil), types.Typ[types.Int64], nil)
		pkg.Scope().Insert(dur.Obj())
		for _, u := range []struct {
			name string
			d    time.Duration
		}{{"Nanosecond", time.Nanosecond}, {"Microsecond", time.Microsecond}, {"Millisecond", time.Millisecond},
			{"Second", time.Second}, {"Minute", time.Minute}, {"Hour", time.Hour}} {
			pkg.Scope().Insert(types.NewConst(token.NoPos, pkg, u.name, dur, constant.MakeInt64(int64(u.d))))
		}
	}
	pkg.MarkComplete()
	return pkg, nil
}

// duration is a time.Duration constant of the relay's code.
func (c relayCode) duration(t *testing.T, name string) time.Duration {
	t.Helper()
	v, ok := c.consts[name]
	if !ok || v.Kind() != constant.Int {
		t.Fatalf("cmd/slsrelay has no integer constant %s (got %v)", name, v)
	}
	n, _ := constant.Int64Val(v)
	return time.Duration(n)
}

// serves reports whether the code registers an HTTP path: a string literal
// that is the path, or a Go 1.22 pattern ending in it ("GET /readyz").
func (c relayCode) serves(path string) bool {
	for lit := range c.literals {
		if lit == path || strings.HasSuffix(lit, " "+path) {
			return true
		}
	}
	return false
}

// defaultMetricsListen is the code's default metrics address, if it has one
// (a constant named like DefaultMetricsListen): "" when metrics are off by
// default and only the config enables them.
func (c relayCode) defaultMetricsListen() (string, string) {
	re := regexp.MustCompile(`^Default.*Metrics.*(Listen|Addr)`)
	for name, v := range c.consts {
		if re.MatchString(name) && v.Kind() == constant.String {
			return name, constant.StringVal(v)
		}
	}
	return "", ""
}

// relayBin is the relay binary: $SLSRELAY_BIN (make test sets it), else
// built once into a temporary directory.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func relayBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SLSRELAY_BIN"); b != "" {
		return b
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slsrelay-deploy-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "slsrelay")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/slsrelay")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("build slsrelay: %v", binErr)
	}
	return binPath
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRelayCodeReadable: the helpers above find what the other tests rely
// on, so a rename in the code fails here with a clear message rather than
// as a puzzling mismatch elsewhere.
func TestRelayCodeReadable(t *testing.T) {
	c := loadCode(t)
	if d := c.duration(t, "DefaultShutdownTimeout"); d <= 0 {
		t.Errorf("DefaultShutdownTimeout = %v", d)
	}
	for _, v := range []string{"version", "commit", "date"} {
		if !c.vars[v] {
			t.Errorf("cmd/slsrelay has no package variable %s for -ldflags -X main.%s", v, v)
		}
	}
	if !c.serves("/healthz") || !c.serves("/metrics") {
		t.Errorf("cmd/slsrelay serves no /healthz or /metrics")
	}
}
