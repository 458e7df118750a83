//go:build !failpoints

package failpoint

// Hit does nothing without the failpoints build tag.
func Hit(string) {}
