package slstest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
)

// Kind selects what a Generator makes.
type Kind string

// Kinds of generated logs.
const (
	// KindAudit: ActionTrail-like events, about 20 fields and 1 KB each.
	KindAudit Kind = "audit"
	// KindWeb: web server access logs, about 12 fields.
	KindWeb Kind = "web"
	// KindOdd: hostile content: very long values, binary bytes, invalid
	// UTF-8, empty values, thousands of fields, non-ASCII keys.
	KindOdd Kind = "odd"
)

// IDField is the field every generated log carries with a unique value.
const IDField = "event_id"

// Generator makes deterministic log groups: the same kind and seed give
// the same logs (apart from their times, which are the wall clock).
// Every log carries a unique "event_id". Not safe for concurrent use.
type Generator struct {
	kind Kind
	seed int64
	rnd  *rand.Rand
	n    int64
}

// NewGenerator returns a generator; an unknown kind generates audit logs.
func NewGenerator(kind Kind, seed int64) *Generator {
	return &Generator{kind: kind, seed: seed, rnd: rand.New(rand.NewPCG(uint64(seed), 0x5157e57))}
}

// NextID is the event_id the next generated log will carry.
func (g *Generator) NextID() string { return fmt.Sprintf("%s-%d-%09d", g.kind, g.seed, g.n) }

// Pull returns groups log groups of perGroup logs each as one serialized
// sls.LogGroupList: what a PullLogs answer decompresses to, and the payload
// of a spool record.
func (g *Generator) Pull(groups, perGroup int) ([]byte, error) {
	lgl := &sls.LogGroupList{}
	for range groups {
		lgl.LogGroups = append(lgl.LogGroups, g.LogGroup(perGroup))
	}
	return lgl.Marshal()
}

// LogGroup returns n logs with a topic, a source and tags (__hostname__,
// __path__, __pack_id__, as LogTags), timed now with TimeNs set.
func (g *Generator) LogGroup(n int) *sls.LogGroup {
	now := time.Now()
	host := fmt.Sprintf("host-%02d", g.rnd.IntN(16))
	lg := &sls.LogGroup{
		Topic:  proto.String(string(g.kind)),
		Source: proto.String(fmt.Sprintf("10.0.%d.%d", g.rnd.IntN(4), 1+g.rnd.IntN(250))),
		LogTags: []*sls.LogTag{
			{Key: proto.String("__hostname__"), Value: proto.String(host)},
			{Key: proto.String("__path__"), Value: proto.String("/var/log/" + string(g.kind) + ".log")},
			{Key: proto.String("__pack_id__"), Value: proto.String(fmt.Sprintf("%016X-%X", g.rnd.Uint64(), g.n))},
		},
	}
	for i := 0; i < n; i++ {
		id := g.NextID()
		g.n++
		var kv [][2]string
		switch g.kind {
		case KindWeb:
			kv = g.web(id, now)
		case KindOdd:
			kv = g.odd(id)
		default:
			kv = g.audit(id, now)
		}
		l := &sls.Log{Time: proto.Uint32(uint32(now.Unix())), TimeNs: proto.Uint32(uint32(now.Nanosecond()))}
		for _, p := range kv {
			l.Contents = append(l.Contents, &sls.LogContent{Key: proto.String(p[0]), Value: proto.String(p[1])})
		}
		lg.Logs = append(lg.Logs, l)
	}
	return lg
}

func (g *Generator) pick(xs ...string) string { return xs[g.rnd.IntN(len(xs))] }

func (g *Generator) hex(n int) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.rnd.IntN(16)]
	}
	return string(b)
}

func (g *Generator) ip() string {
	return fmt.Sprintf("%d.%d.%d.%d", 1+g.rnd.IntN(223), g.rnd.IntN(256), g.rnd.IntN(256), 1+g.rnd.IntN(254))
}

func (g *Generator) audit(id string, now time.Time) [][2]string {
	svc := g.pick("Ecs", "Ram", "Oss", "Sls", "Rds", "Vpc", "Kms", "Sts")
	event := g.pick("DescribeInstances", "CreateAccessKey", "DeleteBucket", "GetLogStoreLogs", "AssumeRole", "ConsoleSignin", "ModifySecurityGroupRule", "StopInstance")
	errCode, result := "", "success"
	if g.rnd.IntN(10) == 0 {
		errCode, result = g.pick("Forbidden.RAM", "InvalidAccessKeyId.NotFound", "Throttling.User"), "failure"
	}
	uid := strconv.Itoa(1_000_000_000_000_000 + g.rnd.IntN(1_000_000))
	return [][2]string{
		{IDField, id},
		{"eventId", g.hex(8) + "-" + g.hex(4) + "-" + g.hex(4) + "-" + g.hex(12)},
		{"eventTime", now.UTC().Format("2006-01-02T15:04:05Z")},
		{"eventVersion", "1"},
		{"eventType", g.pick("ApiCall", "ConsoleOperation", "ConsoleSignin")},
		{"eventSource", strings.ToLower(svc) + ".aliyuncs.com"},
		{"eventName", event},
		{"serviceName", svc},
		{"acsRegion", g.pick("cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1", "eu-central-1")},
		{"sourceIpAddress", g.ip()},
		{"userAgent", g.pick("AlibabaCloud (linux; amd64) Go/1.22 Core/0.0.1 TeaDSL/1", "aliyun-cli/3.0.204", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36")},
		{"requestId", g.hex(8) + "-" + g.hex(4) + "-" + g.hex(4) + "-" + g.hex(4) + "-" + g.hex(12)},
		{"userIdentity.type", g.pick("ram-user", "root-account", "assumed-role")},
		{"userIdentity.principalId", uid},
		{"userIdentity.accountId", "1234567890123456"},
		{"userIdentity.userName", g.pick("alice", "bob", "ops-bot", "terraform", "auditor")},
		{"userIdentity.accessKeyId", "LTAI" + g.hex(20)},
		{"requestParameters", fmt.Sprintf(`{"RegionId":"cn-hangzhou","InstanceId":"i-%s","PageSize":%d}`, strings.ToLower(g.hex(20)), 10+g.rnd.IntN(90))},
		{"resourceName", fmt.Sprintf("acs:%s:cn-hangzhou:1234567890123456:instance/i-%s", strings.ToLower(svc), strings.ToLower(g.hex(20)))},
		{"errorCode", errCode},
		{"result", result},
		{"additionalEventData", fmt.Sprintf(`{"loginAccount":"%s","mfaChecked":"%t","callbackUrl":"https://signin.aliyun.com/%s"}`, g.hex(6), g.rnd.IntN(2) == 0, g.hex(16))},
	}
}

func (g *Generator) web(id string, now time.Time) [][2]string {
	return [][2]string{
		{IDField, id},
		{"remote_addr", g.ip()},
		{"time_local", now.Format("02/Jan/2006:15:04:05 -0700")},
		{"method", g.pick("GET", "GET", "GET", "POST", "PUT", "DELETE")},
		{"request_uri", g.pick("/", "/login", "/api/v1/items", "/static/app.js", "/admin") + "?id=" + strconv.Itoa(g.rnd.IntN(100000))},
		{"status", g.pick("200", "200", "200", "304", "404", "500", "302")},
		{"body_bytes_sent", strconv.Itoa(g.rnd.IntN(50000))},
		{"http_referer", g.pick("-", "https://example.com/", "https://www.aliyun.com/")},
		{"http_user_agent", g.pick("curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0", "Go-http-client/1.1")},
		{"request_time", fmt.Sprintf("%.3f", g.rnd.Float64())},
		{"upstream_addr", fmt.Sprintf("10.1.0.%d:8080", 1+g.rnd.IntN(20))},
		{"host", g.pick("www.example.com", "api.example.com")},
	}
}

// odd cycles through hostile shapes so that every few logs hit each one.
func (g *Generator) odd(id string) [][2]string {
	kv := [][2]string{{IDField, id}}
	switch g.n % 6 {
	case 0: // a very long value
		kv = append(kv, [2]string{"long", strings.Repeat("x", 64<<10+g.rnd.IntN(1000))})
	case 1: // binary bytes and invalid UTF-8
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(g.rnd.IntN(256))
		}
		kv = append(kv, [2]string{"binary", string(b)}, [2]string{"bad_utf8", "a\xff\xfe\xc3(b"}, [2]string{"nul", "a\x00b"})
	case 2: // empty key and values
		kv = append(kv, [2]string{"empty", ""}, [2]string{"", "empty key"}, [2]string{"spaces", "   "})
	case 3: // thousands of fields
		for i := 0; i < 2000; i++ {
			kv = append(kv, [2]string{"f" + strconv.Itoa(i), strconv.Itoa(g.rnd.IntN(1000))})
		}
	case 4: // non-ASCII keys and values, JSON and syslog metacharacters
		kv = append(kv, [2]string{"用户", "张三"}, [2]string{"ключ", "значение"}, [2]string{"emoji🔑", "🚀"},
			[2]string{"json", `{"a":"b\"c","d":[1,2]}`}, [2]string{"meta", "a=b] [x \\ \" \n\r\t |"})
	default: // duplicate keys
		kv = append(kv, [2]string{"dup", "1"}, [2]string{"dup", "2"})
	}
	return kv
}

// Seed appends total logs of kind to a logstore, perGroup logs per group,
// spread round robin over its readwrite shards, and returns their event
// ids in order.
func Seed(s *Server, projectName, logstoreName string, kind Kind, total, perGroup int, seed int64) ([]string, error) {
	if perGroup <= 0 {
		perGroup = 100
	}
	g := NewGenerator(kind, seed)
	ids := make([]string, 0, total)
	for done := 0; done < total; {
		n := min(perGroup, total-done)
		lg := g.LogGroup(n)
		for _, l := range lg.Logs {
			ids = append(ids, l.Contents[0].GetValue())
		}
		if err := s.Append(projectName, logstoreName, -1, lg); err != nil {
			return ids, fmt.Errorf("seed %s/%s: %w", projectName, logstoreName, err)
		}
		done += n
	}
	return ids, nil
}
