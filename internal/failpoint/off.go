//go:build !failpoints

package failpoint

import "os"

// Hit does nothing without the failpoints build tag.
func Hit(string) {}

// WrapSync returns sync unchanged without the failpoints build tag.
func WrapSync(_ string, sync func(*os.File) error) func(*os.File) error { return sync }
