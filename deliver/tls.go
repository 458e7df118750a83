package deliver

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
)

// tlsFiles are the client-side TLS settings every sink offers.
type tlsFiles struct {
	CAFile, CertFile, KeyFile, ServerName string
	InsecureSkipVerify                    bool
}

// clientTLSConfig builds a TLS 1.2+ client configuration from f; errors and
// the warning for disabled verification are prefixed with the sink kind.
func clientTLSConfig(kind string, f tlsFiles, log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: CAFile: %w", kind, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: CAFile %s: no PEM certificate found", kind, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: CertFile/KeyFile: %w", kind, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
		log.Warn(kind + " TLS certificate verification is disabled (InsecureSkipVerify)")
	}
	return cfg, nil
}
