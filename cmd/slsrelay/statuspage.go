package main

import (
	"fmt"
	"html/template"
	"time"
)

// The status page at /: one self-contained HTML document (no scripts, no
// external assets) that refreshes itself every 10 s.

type pageView struct {
	Status
	Title string
}

func pageData(st Status) pageView {
	return pageView{Status: st, Title: "slsrelay: " + st.State}
}

func since(ts string) string {
	if ts == "" {
		return "never"
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return ts
	}
	return ago(time.Since(t)) + " ago"
}

func lag(s float64) string {
	if s < 0 {
		return "?"
	}
	return ago(time.Duration(s * float64(time.Second)))
}

func bytesOrUnknown(n int64) string {
	if n < 0 {
		return "?"
	}
	return humanBytes(n)
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"since": since, "lag": lag, "bytes": bytesOrUnknown, "human": humanBytes,
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"secs": func(s float64) string {
		if s <= 0 {
			return "-"
		}
		return ago(time.Duration(s * float64(time.Second)))
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.6em;margin:0 0 .2em}
h2{font-size:1.15em;margin:1.4em 0 .4em}
.state{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:600}
.delivering{background:#2e7d32}.degraded,.retrying{background:#e69100}.paused,.stalled{background:#c62828}
table{border-collapse:collapse;background:#fff;margin-bottom:.6em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
ul.why{margin:.3em 0 0;padding-left:1.2em}
.meta{color:#666;font-size:.9em}
.reason{max-width:40em;word-break:break-word}
</style></head>
<body>
<h1>slsrelay <span class="state {{.State}}">{{.State}}</span></h1>
<div class="meta">version {{.Version}} ({{.Commit}}) · started {{since .Started}} · {{.Now}}{{if .Config}} · {{.Config}}{{end}}</div>
{{if .Reasons}}<ul class="why">{{range .Reasons}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Sinks</h2>
<table><tr><th>sink</th><th>state</th><th>since</th><th>reason</th><th>oldest undelivered</th><th>spool</th><th>dead letters</th><th>delivered</th><th>last success</th></tr>
{{range .Sinks}}<tr><td>{{.Name}}{{if ne .Name .Type}} <span class="meta">{{.Type}}</span>{{end}}</td><td><span class="state {{.State}}">{{.State}}</span></td>
<td>{{if .Since}}{{since .Since}}{{end}}</td><td class="reason">{{.Reason}}</td><td class="num">{{secs .OldestUndeliveredSecond}}</td>
<td class="num">{{human .SpoolBytes}} of {{human .SpoolMaxBytes}} ({{pct .SpoolUsed}}), {{.SpoolRecords}} records</td>
<td class="num">{{.DeadLetters}}</td><td class="num">{{.DeliveredEvents}}</td><td>{{since .LastSuccess}}</td></tr>
{{end}}</table>
<h2>Sources</h2>
{{if not .Sources}}<p class="meta">none (drain only)</p>{{end}}
{{range .Sources}}<table><tr><th colspan="5">{{.Project}}/{{.Logstore}} <span class="state {{.State}}">{{.State}}</span>
{{if .Consumer}}consumer held{{else}}no consumer{{end}} · last pull {{since .LastPull}} · {{.Logs}} logs{{if .Gaps}} · <b>{{.Gaps}} gaps</b>{{end}}</th></tr>
{{if .Reason}}<tr><td colspan="5" class="reason">{{.Reason}}</td></tr>{{end}}
<tr><th>shard</th><th>held</th><th>lag</th><th>behind</th><th>last pull</th></tr>
{{range .Shards}}<tr><td class="num">{{.Shard}}{{if .ReadOnly}} (read-only){{end}}</td><td>{{if .Held}}yes{{else}}no{{end}}</td><td class="num">{{lag .LagSeconds}}</td><td class="num">{{bytes .BehindBytes}}</td><td>{{since .LastPull}}</td></tr>
{{else}}<tr><td colspan="5" class="meta">no shard held yet</td></tr>{{end}}
</table>{{end}}
<p class="meta">JSON: <a href="/status">/status</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a> · <a href="/healthz">/healthz</a></p>
</body></html>
`))
