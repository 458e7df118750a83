// Package failpoint marks named crash points for the fault campaign
// (cmd/slsrelay chaos tests). In a normal build Hit is an empty function
// the compiler inlines away. Built with -tags failpoints, the environment
// variable SLSRELAY_FAILPOINT="name=N" makes the N-th call of Hit(name)
// print one line to stderr and kill the process with SIGKILL, as a power
// cut or kill -9 at exactly that instant would.
package failpoint

// ErrEnvVar names an error point and the call from which on it fails:
// "name=N" makes the N-th and every later call fail with EIO.
const ErrEnvVar = "SLSRELAY_FAILERR"

// Error points (see WrapSync).
const (
	SpoolFsync = "spool-fsync" // every fsync of the spool's files and directory
)

// EnvVar names the failpoint to trigger and its hit count: "name=N"
// (N defaults to 1).
const EnvVar = "SLSRELAY_FAILPOINT"

// The named points. Each is between two steps whose order the invariants
// depend on.
const (
	IngestAfterPut    = "ingest-after-put"    // spool write done, fsync not yet
	IngestAfterSync   = "ingest-after-sync"   // spool fsynced, local checkpoint not committed
	IngestAfterCommit = "ingest-after-commit" // local checkpoint committed, SLS checkpoint not saved
	DeliverAfterSend  = "deliver-after-send"  // SIEM answered 2xx, spool not advanced
	SpoolRotate       = "spool-rotate"        // a Put rolled to a new segment file
	SpoolDelete       = "spool-delete"        // a fully read segment is about to be deleted
	SpoolState        = "spool-state"         // acked/floor slot written, not fsynced
	SpoolMeta         = "spool-meta"          // diskqueue metadata temp file written, not renamed
)

// Points lists every named point.
var Points = []string{IngestAfterPut, IngestAfterSync, IngestAfterCommit, DeliverAfterSend,
	SpoolRotate, SpoolDelete, SpoolState, SpoolMeta}
