package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file inside the data directory. It holds
// the pid of the process that has the lock; the lock itself is a flock(2)
// on it, which the kernel releases when that process exits, however it
// exits. The file is never removed (removing it would let a second process
// lock a new inode while the first still holds the old one).
const LockFile = "LOCK"

// lockDir takes an exclusive non-blocking flock on dir/LOCK and records our
// pid in it. It fails with an error wrapping ErrLocked when the lock is held.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another relay"
			if holder > 0 {
				who = fmt.Sprintf("another relay (pid %d)", holder)
			}
			return nil, fmt.Errorf("%s holds the data directory %s: %w", who, dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Best effort: the pid is only a hint for the error message above.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// readPID returns the pid written in the lock file, or 0.
func readPID(f *os.File) int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 32))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// unlockDir releases the lock taken by lockDir. The pid is left in the file;
// a stale pid is harmless because only the flock decides.
func unlockDir(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		f.Close()
		return fmt.Errorf("unlock data directory: %w", err)
	}
	return f.Close()
}
