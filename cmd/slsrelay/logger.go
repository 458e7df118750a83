package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// newLogger is the one place that picks the relay's log format: tint on a
// terminal, JSON otherwise (or as configured). Colours only on a terminal
// and never with NO_COLOR set (https://no-color.org); durations print as
// Go duration strings ("1m30s"), never as nanoseconds; a key is never
// repeated in a line (the first value given wins).
func newLogger(w io.Writer, c LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if tty {
			format = "text"
		}
	}
	var h slog.Handler
	if format == "text" {
		_, noColor := os.LookupEnv("NO_COLOR")
		h = tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: noColor || !tty, ReplaceAttr: durationString})
	} else {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString})
	}
	return slog.New(dedupHandler{h: h})
}

// applyLogFlags lets --log-level and --log-format override the config.
func applyLogFlags(c *LogConfig) error {
	if v := cli.logLevel; v != "" {
		switch v {
		case "debug", "info", "warn", "error":
			c.Level = v
		default:
			return fmt.Errorf("--log-level %q: want debug, info, warn or error", v)
		}
	}
	if v := cli.logFormat; v != "" {
		switch v {
		case "auto", "text", "json":
			c.Format = v
		default:
			return fmt.Errorf("--log-format %q: want auto, text or json", v)
		}
	}
	return nil
}

// durationString writes time.Duration values as Go duration strings.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// dedupHandler drops an attribute whose key the line already has (from
// Logger.With or earlier in the same call): components add "sink" or
// "component" to loggers that may carry them already.
type dedupHandler struct {
	h    slog.Handler
	keys map[string]bool // keys added by With at the current group level
}

func (d dedupHandler) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, l) }

func (d dedupHandler) Handle(ctx context.Context, r slog.Record) error {
	dup := false
	seen := map[string]bool{}
	r.Attrs(func(a slog.Attr) bool {
		if d.keys[a.Key] || seen[a.Key] {
			dup = true
			return false
		}
		seen[a.Key] = true
		return true
	})
	if !dup {
		return d.h.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	clear(seen)
	r.Attrs(func(a slog.Attr) bool {
		if !d.keys[a.Key] && !seen[a.Key] {
			seen[a.Key] = true
			nr.AddAttrs(a)
		}
		return true
	})
	return d.h.Handle(ctx, nr)
}

func (d dedupHandler) WithAttrs(as []slog.Attr) slog.Handler {
	keys := make(map[string]bool, len(d.keys)+len(as))
	for k := range d.keys {
		keys[k] = true
	}
	var keep []slog.Attr
	for _, a := range as {
		if !keys[a.Key] {
			keys[a.Key] = true
			keep = append(keep, a)
		}
	}
	if len(keep) == 0 {
		return dedupHandler{h: d.h, keys: keys}
	}
	return dedupHandler{h: d.h.WithAttrs(keep), keys: keys}
}

func (d dedupHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return d
	}
	return dedupHandler{h: d.h.WithGroup(name)}
}
