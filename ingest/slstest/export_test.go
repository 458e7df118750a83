package slstest

// StitchedPulls counts the PullLogs answers s built by stitching stored lz4
// blocks (stitch.go) rather than decompressing and compressing.
func StitchedPulls(s *Server) int64 { return s.stats.stitchedPulls.Load() }
