package main

import (
	"log/slog"
	"path/filepath"

	"slsrelay/deliver"
)

// FileConfig configures a file sink (deliver.FileOptions): one event per
// line in numbered files, each line fsynced before the spool lets it go.
type FileConfig struct {
	// Path names the files; a number goes before the extension:
	// /exports/audit.jsonl → /exports/audit-000001.jsonl, …
	Path string `yaml:"path"`
	// Format: json (default; the HEC event object) or raw (the log's fields).
	Format string `yaml:"format"`
	// MaxBytes starts a new file past this size (default 1GiB).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Gzip compresses the files (each batch one gzip member; ".gz" appended).
	Gzip bool `yaml:"gzip"`
	// Routing templates of the json format, as hec's.
	Host       string `yaml:"host"`
	Source     string `yaml:"source"`
	Sourcetype string `yaml:"sourcetype"`
	Index      string `yaml:"index"`
	// Fields are indexed fields added to every json event.
	Fields map[string]string `yaml:"fields"`
}

func (f *FileConfig) validate(path string, e *ConfigError) {
	switch {
	case f.Path == "":
		e.add(path+".path", "is required")
	case filepath.Base(f.Path) == "." || filepath.Base(f.Path) == ".." || f.Path[len(f.Path)-1] == '/':
		e.add(path+".path", "%q names a directory; give a file name such as /exports/audit.jsonl", f.Path)
	}
	switch f.Format {
	case "", deliver.FileJSON, deliver.FileRaw:
	default:
		e.add(path+".format", "%q is not one of json, raw", f.Format)
	}
	if f.MaxBytes < 0 {
		e.add(path+".max_bytes", "must not be negative")
	} else if f.MaxBytes != 0 && f.MaxBytes < deliver.MinFileMaxBytes {
		e.add(path+".max_bytes", "%s is below the minimum of 4KiB", f.MaxBytes)
	}
}

func newFileSink(s SinkConfig, log *slog.Logger) (deliver.Sink, error) {
	f := s.File
	return deliver.OpenFile(deliver.FileOptions{
		Name: s.Name, Path: f.Path, Format: f.Format, MaxBytes: int64(f.MaxBytes), Gzip: f.Gzip,
		Host: f.Host, Source: f.Source, Sourcetype: f.Sourcetype, Index: f.Index, Fields: f.Fields,
		Retry: retryPolicy(s), Logger: log,
	})
}
