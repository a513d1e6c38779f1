// Package child is the start every privnix child process (frontend,
// storeproc, fetcher, builder set-up) shares: its name for ps and its two
// channels to the monitor on the fixed fds the monitor starts it with.
package child

import (
	"fmt"
	"log/slog"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"privnix/ipc"
)

// The fixed fd layout the monitor starts every child with.
const (
	MonitorFd = 3 // requests and answers
	LogFd     = 4 // log records, rate-limited by the monitor
)

// Channels are a child's connections to the monitor.
type Channels struct {
	Monitor *ipc.Conn
	Logs    *ipc.Conn
	Log     *slog.Logger // writes to Logs
}

// Start names the process name for ps (the monitor execs children through
// /proc/self/fd/N, so the kernel named it "N"; at most 15 bytes are kept)
// and opens the monitor and log channels.
func Start(name string) (*Channels, error) {
	comm := append([]byte(name), 0)
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&comm[0])), 0, 0, 0)
	mon, err := ipc.NewConn(os.NewFile(MonitorFd, "monitor"))
	if err != nil {
		return nil, err
	}
	logs, err := ipc.NewConn(os.NewFile(LogFd, "log"))
	if err != nil {
		mon.Close()
		return nil, err
	}
	return &Channels{Monitor: mon, Logs: logs, Log: slog.New(ipc.NewLogHandler(logs, slog.LevelInfo))}, nil
}

// RefuseRoot fails when the process runs with uid 0 (real or effective):
// the monitor never starts this child as root.
func RefuseRoot() error {
	if os.Geteuid() == 0 || os.Getuid() == 0 {
		return fmt.Errorf("refusing to run as root")
	}
	return nil
}

// Main runs a child's body and, when it returns an error, prints it after
// prog's name on stderr (which the monitor logs) and exits with status 1.
func Main(prog string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}
