package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeDrainPlot draws one drain run: delivered throughput (raw MB/s, per
// sampling interval) and the relay's RSS (MiB) against seconds since the
// SIEM came back, as two stacked panels sharing the time axis, into a PNG.
func writeDrainPlot(path string, r drainResult) error {
	if len(r.Series) < 2 {
		return fmt.Errorf("drain plot: %d samples", len(r.Series))
	}
	bytesPerEvent := float64(r.RawBytes) / float64(r.Events)
	var tput, rss plotter.XYs
	for i := 1; i < len(r.Series); i++ {
		a, b := r.Series[i-1], r.Series[i]
		dt := (b.At - a.At).Seconds()
		if dt <= 0 {
			continue
		}
		mbps := float64(b.Delivered-a.Delivered) * bytesPerEvent / 1e6 / dt
		tput = append(tput, plotter.XY{X: b.At.Seconds(), Y: mbps})
	}
	for _, s := range r.Series {
		if s.RSS > 0 {
			rss = append(rss, plotter.XY{X: s.At.Seconds(), Y: mib(s.RSS)})
		}
	}
	top := plot.New()
	top.Title.Text = fmt.Sprintf("Backlog drain: %.2f GB raw (%d events), SIEM back at t = 0", float64(r.RawBytes)/1e9, r.Events)
	top.Y.Label.Text = "delivered, raw MB/s"
	top.Y.Min = 0
	l1, err := plotter.NewLine(tput)
	if err != nil {
		return err
	}
	l1.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	l1.Width = vg.Points(1.5)
	top.Add(l1, plotter.NewGrid())
	avg := plotter.NewFunction(func(float64) float64 { return r.DrainMBps })
	avg.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	avg.Color = color.Gray{Y: 90}
	top.Add(avg)
	top.Legend.Add("per 250 ms", l1)
	top.Legend.Add(fmt.Sprintf("mean %.0f MB/s", r.DrainMBps), avg)
	top.Legend.Top = true

	bottom := plot.New()
	bottom.X.Label.Text = "seconds since the SIEM came back"
	bottom.Y.Label.Text = "relay RSS, MiB"
	bottom.Y.Min = 0
	bottom.Y.Max = 300
	l2, err := plotter.NewLine(rss)
	if err != nil {
		return err
	}
	l2.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	l2.Width = vg.Points(1.5)
	limit := plotter.NewFunction(func(float64) float64 { return 256 })
	limit.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	limit.Color = color.Gray{Y: 90}
	bottom.Add(l2, limit, plotter.NewGrid())
	bottom.Legend.Add("VmRSS", l2)
	bottom.Legend.Add("target 256 MiB", limit)
	bottom.Legend.Top = true
	if mx := maxY(rss); mx > 280 {
		bottom.Y.Max = mx * 1.1
	}
	xmax := r.Series[len(r.Series)-1].At.Seconds()
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min, p.X.Max = 0, xmax
	}

	const w, h = 9 * vg.Inch, 6 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	png := vgimg.PngCanvas{Canvas: img}
	return writeFileWith(path, png.WriteTo)
}

func maxY(xys plotter.XYs) float64 {
	m := 0.0
	for _, p := range xys {
		m = max(m, p.Y)
	}
	return m
}
