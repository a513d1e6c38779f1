// Package monitor is privnixd, the root process: it accepts clients, decides
// with policy/ who they are and what they may do, starts the unprivileged
// children that parse what clients send, and is the only process that writes
// the store and its database. It parses no client bytes: it reads only its own
// msgpack messages (ipc/msg) from its children.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"privnix/nix/conf"
)

// NixVersion is the Nix version privnix reports to clients in the handshake
// (protocol 1.33+) and in `privnixd --version`: the Nix release whose
// behaviour it implements, tagged with privnix's own version.
const NixVersion = "2.8.0-privnix.0.1"

// Config is everything Run needs.
type Config struct {
	Paths    Paths
	BinDir   string         // where privnix-frontend and privnix-storeproc are
	Settings *conf.Settings // at start; afterwards read Monitor.current
	Log      *slog.Logger
	Audit    *slog.Logger // privileged decisions and actions; nil = Log
	Getenv   func(string) string

	// Load reads the configuration again; each value on Reload (SIGHUP)
	// makes the monitor call it (reload.go). Both may be nil.
	Load   func() (*conf.Settings, []string, error)
	Reload <-chan os.Signal
}

// Monitor is the running daemon.
type Monitor struct {
	cfg     Config
	root    bool // we can change uids; otherwise every child runs as us
	log     *slog.Logger
	audit   *slog.Logger // its own sink: no child can flood it (DESIGN.md, Messages)
	spawner *spawner
	feUIDs  *uidPool
	spUIDs  *uidPool
	pool    *frontendPool

	// buildSpawner starts privnix-build (as root, full bounding set);
	// builds is the build scheduler (build.go).
	buildSpawner *spawner
	buildprocs   *buildprocSpare // build_prestart.go
	builds       *builds

	store    *storeState
	roots    *rootSet
	auto     autoGC // min-free/max-free collections (autogc.go)
	locks    *pathLocks
	snap     atomic.Pointer[snapshot] // the newest configuration (reload.go)
	narinfos *narinfoCache            // substitute.go

	started time.Time

	mu      sync.Mutex
	perUser map[uint32]int             // live connections per client uid; guarded by mu
	conns   map[*session]struct{}      // guarded by mu
	running map[*runningBuild]struct{} // builds holding a build user; guarded by mu
}

// Run serves until ctx is cancelled, then closes the socket and ends every
// child.
func Run(ctx context.Context, cfg Config) error {
	m, err := newMonitor(cfg)
	if err != nil {
		return err
	}
	l, ours, err := listen(cfg.Paths.SocketPath, cfg.Getenv)
	if err != nil {
		return fmt.Errorf("daemon socket: %w", err)
	}
	al, err := m.listenAdmin()
	if err != nil {
		l.Close()
		return fmt.Errorf("admin socket: %w", err)
	}
	go m.serveAdmin(ctx, al)
	m.log.Info("listening", "socket", cfg.Paths.SocketPath, "store", cfg.Paths.StoreDir, "root", m.root)
	go m.pool.fill(ctx)
	if cfg.Reload != nil && cfg.Load != nil {
		go m.reloadOn(ctx, cfg.Reload)
	}
	go func() {
		<-ctx.Done()
		if ours { // not systemd's
			os.Remove(cfg.Paths.SocketPath)
		}
		l.Close()
	}()
	err = m.acceptLoop(ctx, l)
	m.shutdown()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func newMonitor(cfg Config) (*Monitor, error) {
	m := &Monitor{
		cfg:     cfg,
		root:    os.Geteuid() == 0,
		log:     cfg.Log,
		audit:   cfg.Audit,
		perUser: map[uint32]int{},
		conns:   map[*session]struct{}{},
		running: map[*runningBuild]struct{}{},
		started: time.Now(),
	}
	if m.audit == nil {
		m.audit = cfg.Log
	}
	if !m.root {
		m.log.Warn("privnixd is not running as root: it cannot change uids, so every child and build runs as uid " +
			fmt.Sprint(os.Getuid()) + ", confined by namespaces, no_new_privs, seccomp and Landlock only; it serves only this user's store")
	}
	bins, err := openBinaries(cfg.BinDir, m.root)
	if err != nil {
		return nil, err
	}
	m.spawner = newSpawner(bins, m.log)
	m.buildSpawner = newBuildSpawner(bins, m.log)
	m.buildprocs = newBuildprocSpare(m)
	r := cfg.Settings.FrontendUIDs
	m.feUIDs = newUIDPool(r.Lo, r.Hi)
	r = cfg.Settings.StoreprocUIDs
	m.spUIDs = newUIDPool(r.Lo, r.Hi)
	m.pool = newFrontendPool(m, int(cfg.Settings.FrontendPool))
	m.roots = newRootSet()
	m.locks = newPathLocks()
	m.snap.Store(newSnapshot(cfg.Settings, m.log))
	m.narinfos = newNarinfoCache()
	if m.store, err = openStore(m); err != nil {
		return nil, err
	}
	m.builds = newBuilds(m)
	return m, nil
}

func (m *Monitor) acceptLoop(ctx context.Context, l *net.UnixListener) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: wait and go on; one bad moment must not end the daemon.
			m.log.Error("accept failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go m.serveClient(ctx, c)
	}
}

func (m *Monitor) shutdown() {
	m.mu.Lock()
	conns := make([]*session, 0, len(m.conns))
	for s := range m.conns {
		conns = append(conns, s)
	}
	m.mu.Unlock()
	for _, s := range conns {
		s.fe.kill()
	}
	m.pool.drain()
	m.buildprocs.close()
	m.store.close()
}
