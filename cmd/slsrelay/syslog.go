package main

import (
	"errors"
	"log/slog"

	"slsrelay/deliver"
)

// SyslogConfig configures a syslog sink (placeholder until the syslog sink lands).
type SyslogConfig struct{}

func (c *SyslogConfig) validate(path string, e *ConfigError) {
	e.add(path, "the syslog sink is not implemented yet")
}

func newSyslogSink(s SinkConfig, log *slog.Logger) (deliver.Sink, error) {
	return nil, errors.New("the syslog sink is not implemented yet")
}
