package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/checkpoint"
	"slsrelay/deliver"
	"slsrelay/ingest"
	"slsrelay/spool"
)

// build.go turns the YAML config into each component's plain Options. It
// opens nothing; run.go does.

// checkpointOptions: a corrupt checkpoint database is moved aside and the
// relay starts with an empty one, loudly. That is safe: the SLS
// consumer-group checkpoint never passes the local one, so starting from it
// re-spools at most what was spooled since (duplicates, never loss), and an
// unattended relay must not refuse to start.
func checkpointOptions(_ *Config, log *slog.Logger) checkpoint.Options {
	return checkpoint.Options{Logger: log, OnCorrupt: checkpoint.CorruptMoveAside}
}

func spoolDir(c *Config, sink string) string { return filepath.Join(c.DataDir, "spool", sink) }

// checkOrphanedSpools looks for the spools of sinks no longer in the config
// (renamed or removed): one holding undelivered records makes start fail,
// naming it, its count and how to drain it; the relay cannot deliver it
// itself, since the sink's address and credentials went with the config.
// Dead letters alone are only reported, and an empty spool is left alone.
func checkOrphanedSpools(c *Config, log *slog.Logger) error {
	entries, err := os.ReadDir(filepath.Join(c.DataDir, "spool"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("list spools: %w", err)
	}
	configured := map[string]bool{}
	for _, s := range c.Sinks {
		configured[s.Name] = true
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || configured[e.Name()] {
			continue
		}
		dir := spoolDir(c, e.Name())
		st, err := spool.Inspect(dir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("the spool %s belongs to no configured sink and cannot be read (%v): "+
				"it may hold undelivered records; add a sink named %q with drain_only: true to deliver them, "+
				"or move the directory away to give them up knowingly", dir, err, e.Name()))
		case st.Depth > 0:
			errs = append(errs, fmt.Errorf("the spool of sink %q (%s) holds %d undelivered records (%d bytes, oldest %s old) "+
				"but no sink of that name is configured (renamed or removed?): to deliver them, start once with "+
				"that sink back under the name %q and drain_only: true, and stop when slsrelay_spool_records "+
				"is 0 (or rename the sink back); to give them up knowingly, move the directory away",
				e.Name(), dir, st.Depth, st.Bytes, st.OldestAge.Round(time.Second), e.Name()))
		case st.DeadLetters > 0:
			log.Warn("the spool of a sink no longer configured keeps dead letters; nothing is undelivered",
				slog.String("spool", dir), slog.Int64("dead_letters", st.DeadLetters))
		default:
			log.Info("the empty spool of a sink no longer configured is left alone", slog.String("spool", dir))
		}
	}
	return errors.Join(errs...)
}

func spoolOptions(c *Config, log *slog.Logger) spool.Options {
	return spool.Options{
		MaxBytes:     int64(c.Spool.MaxBytes),
		MinFreeBytes: int64(c.Spool.MinFreeBytes),
		SegmentBytes: int64(c.Spool.SegmentBytes),
		Compression:  c.Spool.Compression,
		Logger:       log,

		DeadLetterMaxBytes:     int64(c.Spool.DeadLetterMaxBytes),
		DeadLetterMinFreeBytes: int64(c.Spool.DeadLetterMinFreeBytes),
	}
}

// ingestSources maps sources[] onto ingest.Source values.
func ingestSources(c *Config) ([]ingest.Source, error) {
	creds := slsCredentials(c)
	httpc := slsHTTPClient(c)
	name, err := defaultConsumerName(c.DataDir)
	if err != nil {
		return nil, err
	}
	var out []ingest.Source
	for _, s := range c.Sources {
		pos, at, _ := parseStart(s.Start) // validated
		src := ingest.Source{
			Project: s.Project, Logstore: s.Logstore,
			ConsumerGroup: s.ConsumerGroup, ConsumerName: s.ConsumerName,
			Endpoint:           s.Endpoint,
			Credentials:        creds,
			Region:             c.SLS.Region,
			HTTPClient:         httpc,
			Start:              ingest.Start{Position: pos, Time: at},
			Query:              s.Query,
			Compression:        s.Compression,
			HeartbeatInterval:  time.Duration(s.HeartbeatInterval),
			HeartbeatTimeout:   time.Duration(s.HeartbeatTimeout),
			FetchInterval:      time.Duration(s.FetchInterval),
			IdleFetchInterval:  time.Duration(s.IdleFetchInterval),
			MaxFetchGroups:     s.MaxFetchGroups,
			CheckpointInterval: time.Duration(s.CheckpointInterval),
		}
		if src.Endpoint == "" {
			src.Endpoint = c.SLS.Endpoint
		}
		if src.ConsumerName == "" {
			src.ConsumerName = name
		}
		if c.SLS.AuthVersion == "v4" {
			src.AuthVersion = sls.AuthV4
		}
		out = append(out, src)
	}
	return out, nil
}

func slsCredentials(c *Config) *ingest.FileCredentials {
	return &ingest.FileCredentials{
		AccessKeyID:     c.SLS.AccessKeyID,
		AccessKeySecret: c.SLS.AccessKeySecret.Reveal(),
		SecretFile:      c.SLS.AccessKeySecretFile,
		SecurityToken:   c.SLS.SecurityToken.Reveal(),
		TokenFile:       c.SLS.SecurityTokenFile,
	}
}

func slsHTTPClient(c *Config) *http.Client {
	return ingest.NewHTTPClient(ingest.HTTPOptions{ConnectTo: c.SLS.ConnectTo, Timeout: time.Duration(c.SLS.Timeout)})
}

// newSLSClient is an SLS API client for endpoint with the config's
// credentials, connection settings and signature version (replay's; the
// consumer workers build their own from ingest.Source).
func newSLSClient(c *Config, endpoint string) sls.ClientInterface {
	cl := sls.CreateNormalInterfaceV2(endpoint, slsCredentials(c))
	cl.SetHTTPClient(slsHTTPClient(c))
	if c.SLS.AuthVersion == "v4" {
		cl.SetAuthVersion(sls.AuthV4)
	}
	if c.SLS.Region != "" {
		cl.SetRegion(c.SLS.Region)
	}
	return cl
}

// defaultConsumerName is "<hostname>-<hash of the data directory>": stable
// across restarts (SLS hands the same shards straight back) and distinct for
// two relays on one host.
func defaultConsumerName(dataDir string) (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("consumer name: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("consumer name: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return host + "-" + hex.EncodeToString(sum[:4]), nil
}

// defaultHECConcurrency is sinks[].hec.concurrency when unset.
const defaultHECConcurrency = 4

// newSink builds sinks[i]; the switch is the list of sink types.
func newSink(s SinkConfig, log *slog.Logger) (deliver.Sink, error) {
	switch s.Type {
	case "hec":
		h := s.HEC
		// sinks[].hec.concurrency defaults to 4 (docs/CONFIG.md): a record
		// of one 10 MiB pull is ~13 requests of 1 MiB, and one at a time
		// leaves the relay waiting on each answer (make bench, acks on:
		// 9,200 → 22,000 events/s).
		conc := h.Concurrency
		if conc == 0 {
			conc = defaultHECConcurrency
		}
		o := deliver.HECOptions{
			Name: s.Name, URL: h.URL,
			Token: deliver.Secret(h.Token.Reveal()), TokenFile: h.TokenFile,
			Host: h.Host, Source: h.Source, Sourcetype: h.Sourcetype, Index: h.Index,
			Fields:          h.Fields,
			MaxRequestBytes: int(h.MaxRequestBytes),
			CAFile:          h.TLS.CAFile, CertFile: h.TLS.CertFile, KeyFile: h.TLS.KeyFile,
			ServerName: h.TLS.ServerName, InsecureSkipVerify: h.TLS.InsecureSkipVerify,
			Timeout:    time.Duration(h.Timeout),
			AckEnabled: h.Ack.Enabled, Channel: h.Ack.Channel,
			AckPollInterval: time.Duration(h.Ack.PollInterval), AckTimeout: time.Duration(h.Ack.Timeout),
			Concurrency: conc,
			Retry:       retryPolicy(s),
			Logger:      log,
		}
		if h.Gzip != nil && !*h.Gzip {
			o.DisableGzip = true
		}
		return deliver.NewHEC(o)
	case "syslog":
		return newSyslogSink(s, log)
	case "file":
		return newFileSink(s, log)
	default:
		return nil, fmt.Errorf("sink %q: unknown type %q", s.Name, s.Type)
	}
}

// retryPolicy is sinks[].retry for the transport and the delivery loop.
func retryPolicy(s SinkConfig) deliver.RetryPolicy {
	return deliver.RetryPolicy{Min: time.Duration(s.Retry.MinBackoff), Max: time.Duration(s.Retry.MaxBackoff)}
}
