package main

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"slsrelay/deliver"
)

// Config is the YAML configuration file. Components never see it: build.go
// turns it into each package's Options. testdata/relay.example.yaml documents
// every field; docs/CONFIG.md is the reference.
type Config struct {
	DataDir         string       `yaml:"data_dir"`
	Log             LogConfig    `yaml:"log"`
	SLS             SLSConfig    `yaml:"sls"`
	Sources         []Source     `yaml:"sources"`
	Spool           SpoolConfig  `yaml:"spool"`
	Sinks           []SinkConfig `yaml:"sinks"`
	ShutdownTimeout Duration     `yaml:"shutdown_timeout"`
	// DrainOnly delivers what is in the spool and pulls nothing from SLS: the
	// way to empty the data directory of a relay that was replaced.
	DrainOnly bool          `yaml:"drain_only"`
	Metrics   MetricsConfig `yaml:"metrics"`
	Health    HealthConfig  `yaml:"health"`

	// Warnings found while reading the file (a bare $NAME), for validate
	// to print and run to log.
	Warnings []string `yaml:"-"`
}

// HealthConfig sets the thresholds of /readyz, /status and `slsrelay
// status` (served on metrics.listen).
type HealthConfig struct {
	// PullStaleAfter: a source whose last successful pull is older is not
	// ready (degraded).
	PullStaleAfter Duration `yaml:"pull_stale_after"`
	// SinkStaleAfter: a sink with records waiting and no delivery for this
	// long is not ready (degraded).
	SinkStaleAfter Duration `yaml:"sink_stale_after"`
	// StallAfter: a sink or source degraded for this long is stalled.
	StallAfter Duration `yaml:"stall_after"`
	// SpoolFullRatio: a spool holding this share of its budget or more makes
	// the relay degraded (ingest waits for room once it is full).
	SpoolFullRatio float64 `yaml:"spool_full_ratio"`
}

// MetricsConfig exposes Prometheus metrics and a health check.
type MetricsConfig struct {
	// Listen, host:port, serves /metrics, /healthz, /readyz, /status and
	// the status page at /; empty: off.
	Listen string `yaml:"listen"`
}

// LogConfig selects the relay's own log output.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (text on a terminal, else JSON), text, json
}

// SLSConfig holds what every source shares unless it overrides it.
type SLSConfig struct {
	Endpoint            string `yaml:"endpoint"`
	AccessKeyID         string `yaml:"access_key_id"`
	AccessKeySecret     Secret `yaml:"access_key_secret"`
	AccessKeySecretFile string `yaml:"access_key_secret_file"`
	SecurityToken       Secret `yaml:"security_token"`
	SecurityTokenFile   string `yaml:"security_token_file"`
	// AuthVersion is v1 (the SDK's default) or v4 (needs Region).
	AuthVersion string `yaml:"auth_version"`
	Region      string `yaml:"region"`
	// ConnectTo, host:port, makes every connection to SLS go to this address
	// whatever the host name says (private endpoints, proxies, an emulator):
	// the Host header and TLS server name stay those of the endpoint.
	ConnectTo string `yaml:"connect_to"`
	// Timeout bounds one HTTP request to SLS.
	Timeout Duration `yaml:"timeout"`
}

// Source is one logstore consumed through one consumer group.
type Source struct {
	Project       string `yaml:"project"`
	Logstore      string `yaml:"logstore"`
	ConsumerGroup string `yaml:"consumer_group"`
	ConsumerName  string `yaml:"consumer_name"`
	// Start: begin, end, or an RFC 3339 time; only used for shards the
	// consumer group has no checkpoint for yet.
	Start string `yaml:"start"`
	// Query is an optional server-side SLS filter (SPL), e.g. "* | where a = 'x'".
	Query string `yaml:"query"`
	// Endpoint overrides sls.endpoint for this source.
	Endpoint          string   `yaml:"endpoint"`
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	HeartbeatTimeout  Duration `yaml:"heartbeat_timeout"`
	FetchInterval     Duration `yaml:"fetch_interval"`
	IdleFetchInterval Duration `yaml:"idle_fetch_interval"`
	MaxFetchGroups    int      `yaml:"max_fetch_log_groups"`
	// Compression of pulls on the WAN: lz4 (default) or zstd.
	Compression string `yaml:"compression"`
	// CheckpointInterval is how often the SLS consumer-group checkpoint is
	// committed (the local checkpoint is committed on every pull).
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// SpoolConfig bounds each sink's on-disk spool.
type SpoolConfig struct {
	MaxBytes     ByteSize `yaml:"max_bytes"`
	MinFreeBytes ByteSize `yaml:"min_free_bytes"`
	SegmentBytes ByteSize `yaml:"segment_bytes"`
	Compression  string   `yaml:"compression"`
	// InterleaveAfter applies to sinks with a rate_limit: once delivery
	// flows again after a backlog whose oldest record is older than this,
	// the backlog is sealed and new records are delivered interleaved
	// with it (spool.Lanes). Default DefaultInterleaveAfter.
	InterleaveAfter Duration `yaml:"interleave_after"`
	// DeadLetterMaxBytes is the budget of each sink's dead-letter queue
	// (spool.Options.DeadLetterMaxBytes); DeadLetterMinFreeBytes its
	// free-disk floor (default: min_free_bytes).
	DeadLetterMaxBytes     ByteSize `yaml:"dead_letter_max_bytes"`
	DeadLetterMinFreeBytes ByteSize `yaml:"dead_letter_min_free_bytes"`
}

// maxBatchRecords bounds batch_records: a batch is held in memory, decoded.
const maxBatchRecords = 1024

// SinkConfig is one SIEM destination with its own spool.
type SinkConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // hec, syslog, file
	// RateLimit caps delivery in events per second (0: unlimited), so that a
	// SIEM back from maintenance is not flooded by the backlog.
	RateLimit float64 `yaml:"rate_limit"`
	// BatchRecords caps the spool records delivered together (the head of
	// the queue and those already queued behind it), acknowledged with one
	// fsync; a crash re-sends at most one batch (deliver.LoopOptions).
	// 0: deliver.DefaultBatchRecords; 1: one record at a time.
	BatchRecords int `yaml:"batch_records"`
	// Retry paces retries of transient failures and of a paused sink:
	// exponential backoff with jitter from min_backoff to max_backoff.
	Retry  RetryConfig   `yaml:"retry"`
	HEC    *HECConfig    `yaml:"hec"`
	Syslog *SyslogConfig `yaml:"syslog"`
	File   *FileConfig   `yaml:"file"`
	// Spool holds the sink's own spool settings: the archive of delivered
	// records (slsrelay replay --from-spool).
	Spool SinkSpoolConfig `yaml:"spool"`
}

// SinkSpoolConfig is a sink's archive of delivered records: kept while
// their receive time is within Retain and the archive under RetainBytes
// (either one turns it on; both 0, the default, deletes delivered
// segments). See spool.Options.Retain.
type SinkSpoolConfig struct {
	Retain      Duration `yaml:"retain"`
	RetainBytes ByteSize `yaml:"retain_bytes"`
}

// RetryConfig bounds a sink's exponential backoff.
type RetryConfig struct {
	MinBackoff Duration `yaml:"min_backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// HECConfig configures a Splunk HTTP Event Collector sink.
type HECConfig struct {
	URL             string    `yaml:"url"`
	Token           Secret    `yaml:"token"`
	TokenFile       string    `yaml:"token_file"`
	Index           string    `yaml:"index"`
	Sourcetype      string    `yaml:"sourcetype"`
	Source          string    `yaml:"source"`
	Host            string    `yaml:"host"`
	Gzip            *bool     `yaml:"gzip"`
	MaxRequestBytes ByteSize  `yaml:"max_request_bytes"`
	Timeout         Duration  `yaml:"timeout"`
	Concurrency     int       `yaml:"concurrency"`
	TLS             TLSConfig `yaml:"tls"`
	Ack             AckConfig `yaml:"ack"`

	// Fields are indexed fields added to every event.
	Fields map[string]string `yaml:"fields"`
}

// TLSConfig is the client side of a TLS connection.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// AckConfig enables Splunk indexer acknowledgement.
type AckConfig struct {
	Enabled      bool     `yaml:"enabled"`
	Channel      string   `yaml:"channel"`
	PollInterval Duration `yaml:"poll_interval"`
	Timeout      Duration `yaml:"timeout"`
}

// Defaults for fields left empty.
const (
	DefaultConsumerGroup      = "slsrelay"
	DefaultShutdownTimeout    = 30 * time.Second
	DefaultCheckpointInterval = 5 * time.Second
	DefaultInterleaveAfter    = 10 * time.Second
	DefaultPullStaleAfter     = 2 * time.Minute
	DefaultSinkStaleAfter     = 5 * time.Minute
	DefaultStallAfter         = 15 * time.Minute
	DefaultSpoolFullRatio     = 0.9
)

// ParseConfig reads a YAML config from r, expands ${ENV} references (with
// lookup, usually os.LookupEnv), applies defaults and validates. It has no
// side effects. A validation failure is a *ConfigError listing every problem.
func ParseConfig(r io.Reader, lookup func(string) (string, bool)) (*Config, error) {
	return parseConfig(r, lookup, true)
}

// LoadConfigForInspection reads the config at path for the commands that
// only look at the relay (status, spool stat|dump|requeue): a variable that
// is not set (a secret kept out of an operator's shell) is left as written,
// and nothing is validated but the YAML itself and the fields' types.
func LoadConfigForInspection(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	return parseConfig(f, os.LookupEnv, false)
}

func parseConfig(r io.Reader, lookup func(string) (string, bool), strict bool) (*Config, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, &ConfigError{Problems: []string{yamlProblem(err)}}
	}
	var c Config
	if len(doc.Content) > 0 {
		// ${NAME} is expanded in scalar values only: not in comments, and a
		// value from the environment can never change the file's structure.
		if missing := expandEnv(doc.Content[0], lookup, "", &c.Warnings); len(missing) > 0 && strict {
			ce := &ConfigError{}
			for _, m := range missing {
				ce.add("", "line %d: environment variable %s is referenced but not set", m.line, m.name)
			}
			return nil, ce
		}
		tree := checkTree(doc.Content[0], reflect.TypeOf(c), "")
		if err := doc.Decode(&c); err != nil {
			tree = append(tree, yamlProblem(err))
		}
		if len(tree) > 0 {
			ce := &ConfigError{Problems: tree}
			if !strict {
				return nil, ce
			}
			// The semantic checks still run on what decoded, except those
			// about a field already reported.
			c.applyDefaults()
			if err := c.Validate(); err != nil {
				var ve *ConfigError
				if errors.As(err, &ve) {
					for _, p := range ve.Problems {
						if !reportedAlready(tree, p) {
							ce.Problems = append(ce.Problems, p)
						}
					}
				}
			}
			return nil, ce
		}
	}
	c.applyDefaults()
	if !strict {
		return &c, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig parses the file at path; see ParseConfig.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	return ParseConfig(f, os.LookupEnv)
}

// envRef is ${NAME}, ${NAME:-default} (default when NAME is unset or
// empty) or ${NAME-default} (default when NAME is unset).
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}`)

// bareEnvRef is $NAME not written as ${NAME}; $$ is a literal dollar.
var bareEnvRef = regexp.MustCompile(`\$\$|\$([A-Za-z_][A-Za-z0-9_]*)`)

type missingEnv struct {
	name string
	line int
}

// secretKeys are the fields whose values a warning must not quote.
var secretKeys = map[string]bool{"access_key_secret": true, "security_token": true, "token": true}

// expandEnv replaces ${NAME} (and ${NAME:-default}, ${NAME-default}) with
// the variable's value in every scalar of the tree under path; a bare
// $NAME is left as written (secrets may contain '$'), with a warning.
func expandEnv(n *yaml.Node, lookup func(string) (string, bool), path string, warnings *[]string) []missingEnv {
	var missing []missingEnv
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		where := path
		if where == "" {
			where = "value"
		}
		// Bare references, looked for outside ${...}.
		for _, m := range bareEnvRef.FindAllStringSubmatch(envRef.ReplaceAllString(n.Value, ""), -1) {
			if m[1] == "" {
				continue
			}
			key := path[strings.LastIndexAny(path, ".]")+1:]
			ref := "$" + m[1]
			if secretKeys[key] {
				ref = "a bare $NAME"
			}
			*warnings = append(*warnings, fmt.Sprintf("%s (line %d): %s is used literally; write ${NAME} to take the value from the environment", where, n.Line, ref))
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			name, op, def := m[1], m[2], m[3]
			v, ok := lookup(name)
			switch {
			case op == ":-" && (!ok || v == ""):
				return def
			case op == "-" && !ok:
				return def
			case !ok:
				missing = append(missing, missingEnv{name, n.Line})
				return ref
			}
			return v
		})
	}
	for i, c := range n.Content {
		p := path
		switch n.Kind {
		case yaml.MappingNode:
			if i%2 == 0 {
				continue
			}
			if path != "" {
				p += "."
			}
			p += n.Content[i-1].Value
		case yaml.SequenceNode:
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		missing = append(missing, expandEnv(c, lookup, p, warnings)...)
	}
	return missing
}

// checkTree walks n along t (the Go type it decodes into) and reports,
// as "path: message (line N)", every mapping key t has no field for and
// every value that cannot decode into its field's type; each such key and
// value is removed from the tree, so that the rest still decodes and is
// checked. yaml.v3 alone stops at the first error of a custom type and
// names lines, not fields.
func checkTree(n *yaml.Node, t reflect.Type, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	name := path
	if name == "" {
		name = "the file"
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []string{fmt.Sprintf("%s: must be a mapping of fields, not %s (line %d)", name, nodeWhat(n), n.Line)}
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		var out []string
		keep := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				out = append(out, fmt.Sprintf("%s: unknown field (line %d)", p, k.Line))
				continue
			}
			probs := checkTree(v, ft, p)
			out = append(out, probs...)
			if len(probs) > 0 && !isContainer(ft) {
				continue // a bad scalar: drop it, keep checking the rest
			}
			keep = append(keep, k, v)
		}
		n.Content = keep
		return out
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []string{fmt.Sprintf("%s: must be a list, not %s (line %d)", name, nodeWhat(n), n.Line)}
		}
		var out []string
		for i, c := range n.Content {
			out = append(out, checkTree(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []string{fmt.Sprintf("%s: must be a mapping, not %s (line %d)", name, nodeWhat(n), n.Line)}
		}
		var out []string
		keep := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			probs := checkTree(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value)
			out = append(out, probs...)
			if len(probs) == 0 {
				keep = append(keep, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = keep
		return out
	case reflect.Interface:
		return nil
	}
	// A scalar field.
	if n.Kind != yaml.ScalarNode {
		return []string{fmt.Sprintf("%s: must be a single value, not %s (line %d)", name, nodeWhat(n), n.Line)}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return []string{fmt.Sprintf("%s: %s (line %d)", name, scalarProblem(n, t, err), n.Line)}
	}
	return nil
}

func isContainer(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

// nodeWhat names a node's kind for an error message.
func nodeWhat(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// scalarProblem says why n does not decode into t, without yaml.v3's
// internals ("!!str", Go type names).
func scalarProblem(n *yaml.Node, t reflect.Type, err error) string {
	switch t {
	case reflect.TypeOf(Duration(0)), reflect.TypeOf(ByteSize(0)):
		msg := err.Error()
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("%q is not an integer", n.Value)
	case reflect.Float32, reflect.Float64:
		return fmt.Sprintf("%q is not a number", n.Value)
	case reflect.Bool:
		return fmt.Sprintf("%q is not true or false", n.Value)
	case reflect.String:
		return fmt.Sprintf("%q is not a string", n.Value)
	}
	return yamlProblem(err)
}

// yamlProblem turns a yaml.v3 error into one line without the library's
// prefixes; yaml errors carry line numbers but never echo whole values.
func yamlProblem(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return "yaml: " + strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

func (c *Config) applyDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "auto"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.Spool.InterleaveAfter == 0 {
		c.Spool.InterleaveAfter = Duration(DefaultInterleaveAfter)
	}
	if c.SLS.AuthVersion == "" {
		c.SLS.AuthVersion = "v1"
	}
	h := &c.Health
	if h.PullStaleAfter == 0 {
		h.PullStaleAfter = Duration(DefaultPullStaleAfter)
	}
	if h.StallAfter == 0 {
		h.StallAfter = Duration(DefaultStallAfter)
	}
	if h.SinkStaleAfter == 0 {
		// Never past a stall_after set shorter than the default.
		h.SinkStaleAfter = min(Duration(DefaultSinkStaleAfter), h.StallAfter)
	}
	if h.SpoolFullRatio == 0 {
		h.SpoolFullRatio = DefaultSpoolFullRatio
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.ConsumerGroup == "" {
			s.ConsumerGroup = DefaultConsumerGroup
		}
		if s.Start == "" {
			s.Start = "begin"
		}
		if s.Compression == "" {
			s.Compression = "lz4"
		}
		if s.CheckpointInterval == 0 {
			s.CheckpointInterval = Duration(DefaultCheckpointInterval)
		}
	}
	for i := range c.Sinks {
		if c.Sinks[i].Name == "" {
			c.Sinks[i].Name = c.Sinks[i].Type
			if len(c.Sinks) > 1 {
				c.Sinks[i].Name = fmt.Sprintf("%s-%d", c.Sinks[i].Type, i)
			}
		}
	}
}

// reportedAlready tells whether problem p is about a field one of the
// problems of tree already names.
func reportedAlready(tree []string, p string) bool {
	path, _, ok := strings.Cut(p, ": ")
	if !ok {
		return false
	}
	for _, t := range tree {
		if tp, _, _ := strings.Cut(t, ": "); tp == path || strings.HasPrefix(path, tp+".") || strings.HasPrefix(path, tp+"[") {
			return true
		}
	}
	return false
}

// ConfigError lists every problem found, one "path: message" per line.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string { return strings.Join(e.Problems, "\n") }

func (e *ConfigError) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	e.Problems = append(e.Problems, msg)
}

// Validate reports every problem as a *ConfigError, or nil. Values of
// secrets are never quoted.
func (c *Config) Validate() error {
	e := &ConfigError{}
	if c.DataDir == "" {
		e.add("data_dir", "is required (the spool and checkpoints live there)")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		e.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		e.add("log.format", "%q is not one of auto, text, json", c.Log.Format)
	}
	if c.ShutdownTimeout < 0 {
		e.add("shutdown_timeout", "must not be negative")
	}
	if c.Metrics.Listen != "" {
		checkHostPort(e, "metrics.listen", c.Metrics.Listen)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"pull_stale_after", c.Health.PullStaleAfter}, {"sink_stale_after", c.Health.SinkStaleAfter}, {"stall_after", c.Health.StallAfter}} {
		if d.v < 0 {
			e.add("health."+d.name, "must not be negative")
		}
	}
	if c.Health.SinkStaleAfter > c.Health.StallAfter && c.Health.StallAfter > 0 {
		e.add("health.sink_stale_after", "must not exceed health.stall_after")
	}
	if r := c.Health.SpoolFullRatio; r < 0 || r > 1 {
		e.add("health.spool_full_ratio", "%g is outside 0..1", r)
	}
	c.validateSLS(e)
	c.validateSpool(e)
	if len(c.Sinks) == 0 {
		e.add("sinks", "at least one sink is required")
	}
	names := map[string]int{}
	for i := range c.Sinks {
		path := fmt.Sprintf("sinks[%d]", i)
		if j, dup := names[c.Sinks[i].Name]; dup {
			e.add(path+".name", "%q is already used by sinks[%d]", c.Sinks[i].Name, j)
		}
		names[c.Sinks[i].Name] = i
		c.Sinks[i].validate(path, e)
	}
	if len(e.Problems) > 0 {
		return e
	}
	return nil
}

func (c *Config) validateSLS(e *ConfigError) {
	if c.DrainOnly {
		return
	}
	s := &c.SLS
	if len(c.Sources) == 0 {
		e.add("sources", "at least one source is required (or drain_only: true)")
	}
	if s.AccessKeyID == "" {
		e.add("sls.access_key_id", "is required")
	}
	switch {
	case s.AccessKeySecret == "" && s.AccessKeySecretFile == "":
		e.add("sls.access_key_secret", "is required (or sls.access_key_secret_file)")
	case s.AccessKeySecret != "" && s.AccessKeySecretFile != "":
		e.add("sls.access_key_secret", "set either access_key_secret or access_key_secret_file, not both")
	case s.AccessKeySecretFile != "":
		checkReadable(e, "sls.access_key_secret_file", s.AccessKeySecretFile)
	}
	if s.SecurityToken != "" && s.SecurityTokenFile != "" {
		e.add("sls.security_token", "set either security_token or security_token_file, not both")
	}
	if s.SecurityTokenFile != "" {
		checkReadable(e, "sls.security_token_file", s.SecurityTokenFile)
	}
	switch s.AuthVersion {
	case "v1":
	case "v4":
		if s.Region == "" {
			e.add("sls.region", "is required with auth_version v4")
		}
	default:
		e.add("sls.auth_version", "%q is not one of v1, v4", s.AuthVersion)
	}
	if s.ConnectTo != "" {
		checkHostPort(e, "sls.connect_to", s.ConnectTo)
	}
	if s.Timeout < 0 {
		e.add("sls.timeout", "must not be negative")
	}
	seen := map[string]int{}
	for i := range c.Sources {
		src := &c.Sources[i]
		path := fmt.Sprintf("sources[%d]", i)
		if src.Project == "" {
			e.add(path+".project", "is required")
		}
		if src.Logstore == "" {
			e.add(path+".logstore", "is required")
		}
		key := src.Project + "/" + src.Logstore + "/" + src.ConsumerGroup
		if j, dup := seen[key]; dup {
			e.add(path, "project %q, logstore %q and consumer group %q repeat sources[%d]", src.Project, src.Logstore, src.ConsumerGroup, j)
		}
		seen[key] = i
		if src.Endpoint == "" && s.Endpoint == "" {
			e.add(path+".endpoint", "is required (or sls.endpoint)")
		}
		if _, _, err := parseStart(src.Start); err != nil {
			e.add(path+".start", "%v", err)
		}
		switch src.Compression {
		case "lz4", "zstd":
		default:
			e.add(path+".compression", "%q is not one of lz4, zstd", src.Compression)
		}
		if src.MaxFetchGroups < 0 || src.MaxFetchGroups > 1000 {
			e.add(path+".max_fetch_log_groups", "%d is outside 1..1000 (0 means the SDK default, 1000)", src.MaxFetchGroups)
		}
		for _, d := range []struct {
			name string
			v    Duration
		}{{"heartbeat_interval", src.HeartbeatInterval}, {"heartbeat_timeout", src.HeartbeatTimeout}, {"fetch_interval", src.FetchInterval}, {"idle_fetch_interval", src.IdleFetchInterval}, {"checkpoint_interval", src.CheckpointInterval}} {
			if d.v < 0 {
				e.add(path+"."+d.name, "must not be negative")
			}
		}
		if src.HeartbeatInterval > 0 && src.HeartbeatInterval < Duration(time.Second) {
			e.add(path+".heartbeat_interval", "%s is below the SLS minimum of 1s", time.Duration(src.HeartbeatInterval))
		}
		if src.HeartbeatTimeout != 0 && src.HeartbeatTimeout < src.HeartbeatInterval {
			e.add(path+".heartbeat_timeout", "must not be shorter than heartbeat_interval")
		}
	}
}

func (c *Config) validateSpool(e *ConfigError) {
	s := &c.Spool
	if s.MaxBytes < 0 {
		e.add("spool.max_bytes", "must not be negative")
	}
	if s.MinFreeBytes < 0 {
		e.add("spool.min_free_bytes", "must not be negative")
	}
	if s.DeadLetterMaxBytes < 0 {
		e.add("spool.dead_letter_max_bytes", "must not be negative")
	}
	if s.DeadLetterMinFreeBytes < 0 {
		e.add("spool.dead_letter_min_free_bytes", "must not be negative")
	}
	if s.SegmentBytes != 0 && s.SegmentBytes < 1<<20 {
		e.add("spool.segment_bytes", "%s is below the minimum of 1MiB", s.SegmentBytes)
	}
	if s.MaxBytes != 0 && s.SegmentBytes > s.MaxBytes {
		e.add("spool.segment_bytes", "must not exceed spool.max_bytes")
	}
	switch s.Compression {
	case "", "s2", "lz4", "zstd":
	default:
		e.add("spool.compression", "%q is not one of s2, lz4, zstd", s.Compression)
	}
	if s.InterleaveAfter < 0 {
		e.add("spool.interleave_after", "must not be negative")
	}
}

func (s *SinkConfig) validate(path string, e *ConfigError) {
	if s.Spool.Retain < 0 {
		e.add(path+".spool.retain", "must not be negative")
	}
	if s.Spool.RetainBytes < 0 {
		e.add(path+".spool.retain_bytes", "must not be negative")
	}
	if s.RateLimit < 0 {
		e.add(path+".rate_limit", "must not be negative")
	}
	if s.BatchRecords < 0 || s.BatchRecords > maxBatchRecords {
		e.add(path+".batch_records", "must be 1..%d (0: the default, %d)", maxBatchRecords, deliver.DefaultBatchRecords)
	}
	if s.Retry.MinBackoff < 0 || s.Retry.MaxBackoff < 0 {
		e.add(path+".retry", "backoffs must not be negative")
	} else if s.Retry.MaxBackoff != 0 && s.Retry.MinBackoff > s.Retry.MaxBackoff {
		e.add(path+".retry.min_backoff", "must not exceed max_backoff")
	}
	switch s.Type {
	case "hec":
		if s.HEC == nil {
			e.add(path+".hec", "is required for type hec")
			return
		}
		s.HEC.validate(path+".hec", e)
	case "syslog":
		if s.Syslog == nil {
			e.add(path+".syslog", "is required for type syslog")
			return
		}
		s.Syslog.validate(path+".syslog", e)
	case "file":
		if s.File == nil {
			e.add(path+".file", "is required for type file")
			return
		}
		s.File.validate(path+".file", e)
	case "":
		e.add(path+".type", "is required (hec, syslog, file)")
	default:
		e.add(path+".type", "%q is not a known sink type (hec, syslog, file)", s.Type)
	}
}

func (h *HECConfig) validate(path string, e *ConfigError) {
	checkURL(e, path+".url", h.URL)
	switch {
	case h.Token == "" && h.TokenFile == "":
		e.add(path+".token", "is required (or token_file)")
	case h.Token != "" && h.TokenFile != "":
		e.add(path+".token", "set either token or token_file, not both")
	case h.TokenFile != "":
		checkReadable(e, path+".token_file", h.TokenFile)
	}
	if h.MaxRequestBytes < 0 {
		e.add(path+".max_request_bytes", "must not be negative")
	} else if h.MaxRequestBytes != 0 && h.MaxRequestBytes < 4096 {
		e.add(path+".max_request_bytes", "%s is below the minimum of 4KiB", h.MaxRequestBytes)
	}
	if h.Timeout < 0 {
		e.add(path+".timeout", "must not be negative")
	}
	if h.Concurrency < 0 || h.Concurrency > 64 {
		e.add(path+".concurrency", "%d is outside 0..64", h.Concurrency)
	}
	h.TLS.validate(path+".tls", e)
	if h.Ack.Channel != "" && !guidPattern.MatchString(h.Ack.Channel) {
		e.add(path+".ack.channel", "%q is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", h.Ack.Channel)
	}
	if h.Ack.PollInterval < 0 {
		e.add(path+".ack.poll_interval", "must not be negative")
	}
	if h.Ack.Timeout < 0 {
		e.add(path+".ack.timeout", "must not be negative")
	}
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (t *TLSConfig) validate(path string, e *ConfigError) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		e.add(path, "cert_file and key_file go together")
	}
	for _, f := range []struct{ name, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path != "" {
			checkReadable(e, path+"."+f.name, f.path)
		}
	}
}

func checkReadable(e *ConfigError, path, file string) {
	f, err := os.Open(file)
	if err != nil {
		e.add(path, "cannot read %q: %v", file, errors.Unwrap(err))
		return
	}
	f.Close()
}

// parseStart reads sources[].start: begin, end or an RFC 3339 time.
func parseStart(s string) (position string, at time.Time, err error) {
	switch s {
	case "begin", "end":
		return s, time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%q is not begin, end or an RFC 3339 time (2026-01-02T15:04:05Z)", s)
	}
	return "time", t, nil
}

// Duration is a time.Duration written as "30s", "5m", "1h30m".
type Duration time.Duration

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 500ms, 30s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size written as 1048576, "512KiB", "64MiB", "8GiB" or "1GB".
type ByteSize int64

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(b) >= u.n && int64(b)%u.n == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.n, u.suffix)
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML accepts a plain number of bytes or a number with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

var byteSizePattern = regexp.MustCompile(`^\s*(\d+)(?:\.(\d+))?\s*([KMGTP]i?B?|B)?\s*$`)

// parseByteSize reads 1048576, 512KiB, 64MiB, 8GiB, 8Gi, 1.5GiB, 1GB
// (KB, MB, GB, TB, PB and K, M, G, T, P are powers of ten; KiB and Ki and
// the like powers of two). A fraction must come to a whole number of bytes.
func parseByteSize(s string) (int64, error) {
	m := byteSizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (e.g. 1048576, 512KiB, 64MiB, 8GiB, 1.5GiB)", s)
	}
	unit := strings.TrimSuffix(m[3], "B")
	mult, ok := map[string]int64{"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50}[unit]
	if !ok {
		return 0, fmt.Errorf("%q is not a size: unknown unit %q", s, m[3])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	total := n * mult
	if frac := m[2]; frac != "" {
		if len(frac) > 9 {
			return 0, fmt.Errorf("%q has too many decimals", s)
		}
		f, _ := new(big.Int).SetString(frac, 10)
		den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
		q, r := new(big.Int).QuoRem(f.Mul(f, big.NewInt(mult)), den, new(big.Int))
		if r.Sign() != 0 {
			return 0, fmt.Errorf("%q is not a whole number of bytes", s)
		}
		total += q.Int64()
	}
	return total, nil
}

// Secret is a string that never prints: in text, logs, JSON and errors it
// reads as a fixed mask.
type Secret string

const secretMask = "[redacted]"

func (s Secret) String() string               { return secretMask }
func (s Secret) GoString() string             { return secretMask }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + secretMask + `"`), nil }
func (s Secret) MarshalYAML() (any, error)    { return secretMask, nil }

// Reveal returns the secret's value, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

func checkURL(e *ConfigError, path, raw string) {
	if raw == "" {
		e.add(path, "is required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.add(path, "%q is not an http:// or https:// URL", raw)
		return
	}
	if u.User != nil {
		e.add(path, "must not carry credentials (use token or token_file)")
	}
}

func checkHostPort(e *ConfigError, path, hp string) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		e.add(path, "%q is not host:port", hp)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		e.add(path, "%q has no valid port", hp)
	}
}
