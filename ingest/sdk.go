package ingest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// HTTPOptions shapes the HTTP client used for SLS.
type HTTPOptions struct {
	// ConnectTo, host:port, sends every connection there whatever host the
	// URL names (private endpoints, emulators, port forwards). The Host
	// header and TLS server name stay the endpoint's, so signatures and
	// certificates still match. Empty: resolve normally.
	ConnectTo string
	// Timeout bounds one request; default 60s (pulls of 1000 groups over a
	// slow WAN take a while).
	Timeout time.Duration
}

// NewHTTPClient returns a client for SLS shaped by o; it honours
// HTTP(S)_PROXY from the environment.
func NewHTTPClient(o HTTPOptions) *http.Client {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DisableCompression = true // the SDK asks for lz4/zstd itself
	if o.ConnectTo != "" {
		target := o.ConnectTo
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, target)
		}
	} else {
		tr.DialContext = d.DialContext
	}
	return &http.Client{Transport: tr, Timeout: o.Timeout}
}

// FileCredentials supplies SLS credentials, reading the secret and STS token
// from files when named there and re-reading them when they change, so that
// a rotated STS token is picked up without a restart.
type FileCredentials struct {
	AccessKeyID     string
	AccessKeySecret string // used when SecretFile is empty
	SecretFile      string
	SecurityToken   string // used when TokenFile is empty
	TokenFile       string

	mu    sync.Mutex
	cache map[string]fileCache
}

type fileCache struct {
	mod   time.Time
	size  int64
	value string
}

var _ sls.CredentialsProvider = (*FileCredentials)(nil)

// GetCredentials implements sls.CredentialsProvider; safe for concurrent use.
func (f *FileCredentials) GetCredentials() (sls.Credentials, error) {
	c := sls.Credentials{AccessKeyID: f.AccessKeyID, AccessKeySecret: f.AccessKeySecret, SecurityToken: f.SecurityToken}
	var err error
	if f.SecretFile != "" {
		if c.AccessKeySecret, err = f.read(f.SecretFile); err != nil {
			return c, err
		}
	}
	if f.TokenFile != "" {
		if c.SecurityToken, err = f.read(f.TokenFile); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (f *FileCredentials) read(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("read credentials file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.cache[path]; ok && c.mod.Equal(st.ModTime()) && c.size == st.Size() {
		return c.value, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read credentials file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("credentials file %s is empty", path)
	}
	if f.cache == nil {
		f.cache = map[string]fileCache{}
	}
	f.cache[path] = fileCache{mod: st.ModTime(), size: st.Size(), value: v}
	return v, nil
}
