package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// chromiumFlags run Debian's chromium headless, offline from everything but
// the page, with a fresh profile.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"}

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium; .ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): the status page is not checked in a browser")
	return ""
}

// TestStatusPage_Browser renders the status page of a relay whose sink is
// retrying (HEC answering 503) in headless Chromium and checks the
// screenshot shows the page: the orange "retrying"/"degraded" badges and
// the white tables on the grey background. With UPDATE_STATUS_PNG=1 it
// writes the screenshot to docs/status-page.png, the one README shows.
func TestStatusPage_Browser(t *testing.T) {
	bin := chromium(t)
	w := newWorld(t, 2, 3000, 100, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
	cfg := w.config()
	fastHealth(cfg)
	cfg.Health.StallAfter = Duration(time.Hour) // degraded, not stalled, whatever the machine's speed
	addr := freeAddr(t)
	cfg.Metrics.Listen = addr
	rr := startRelay(t, cfg, nil)
	waitSink(t, rr.r, "sink retrying and not ready", func(s SinkStatus) bool { return s.State == "retrying" && !s.Ready })

	dir := t.TempDir()
	shot := filepath.Join(dir, "status.png")
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+filepath.Join(dir, "profile"),
		"--window-size=1280,760", "--screenshot="+shot, "http://"+addr+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out.String())
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out.String())
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 760 {
		t.Errorf("screenshot is %v, want 1280x760", b)
	}
	// The badge colour #e69100 (degraded, retrying), the page's #fafafa and
	// the tables' white must all be on screen in quantity.
	counts := colours(img, map[string]color.RGBA{
		"badge": {0xe6, 0x91, 0x00, 0xff}, "background": {0xfa, 0xfa, 0xfa, 0xff}, "table": {0xff, 0xff, 0xff, 0xff}})
	for name, n := range counts {
		if n < 500 {
			t.Errorf("%s colour: %d pixels, want the page rendered (≥ 500)", name, n)
		}
	}
	if os.Getenv("UPDATE_STATUS_PNG") == "1" {
		raw, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/status-page.png", raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(out.String(), "ERR_") {
		t.Logf("chromium said:\n%s", out.String())
	}
}

// colours counts the pixels of img close to each named colour.
func colours(img image.Image, want map[string]color.RGBA) map[string]int {
	n := map[string]int{}
	for name := range want {
		n[name] = 0
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for name, c := range want {
				if near(r>>8, c.R) && near(g>>8, c.G) && near(bl>>8, c.B) {
					n[name]++
				}
			}
		}
	}
	return n
}

func near(a uint32, b uint8) bool { d := int(a) - int(b); return d > -4 && d < 4 }
