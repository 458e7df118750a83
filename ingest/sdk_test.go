package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileCredentials_RereadsRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	secret, token := filepath.Join(dir, "secret"), filepath.Join(dir, "sts")
	write := func(path, v string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(secret, "SECRET-VALUE-1", t0)
	write(token, "tok1", t0)
	fc := &FileCredentials{AccessKeyID: "id", SecretFile: secret, TokenFile: token}
	c, err := fc.GetCredentials()
	if err != nil || c.AccessKeyID != "id" || c.AccessKeySecret != "SECRET-VALUE-1" || c.SecurityToken != "tok1" {
		t.Fatalf("got %+v, %v", c, err)
	}
	write(token, "tok2", t0.Add(time.Minute)) // an STS agent rotates the token
	if c, _ = fc.GetCredentials(); c.SecurityToken != "tok2" {
		t.Errorf("token after rotation = %q, want tok2", c.SecurityToken)
	}
	write(secret, "", t0.Add(2*time.Minute))
	if _, err := fc.GetCredentials(); err == nil || strings.Contains(err.Error(), "SECRET-VALUE-1") {
		t.Errorf("empty secret file: err = %v, want an error naming no secret", err)
	}
	os.Remove(token)
	if _, err := fc.GetCredentials(); err == nil {
		t.Error("missing token file: no error")
	}
}
