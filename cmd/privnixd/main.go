// Command privnixd is the privnix monitor: the root daemon that replaces
// nix-daemon. It listens on the Nix daemon socket, decides who may connect,
// starts one unprivileged frontend per client and is the only process that
// writes the store and its database.
//
// Powers kept: root (to change uids of children, own the store and the
// database); it parses no client bytes.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"

	"github.com/alecthomas/kong"

	"privnix/monitor"
	"privnix/nix/conf"
)

type cli struct {
	Daemon     bool             `help:"Accepted for compatibility with nix-daemon; privnixd always runs as a daemon in the foreground."`
	Version    kong.VersionFlag `help:"Print the version and exit."`
	BinDir     string           `name:"bin-dir" placeholder:"DIR" help:"Directory holding privnix-frontend and privnix-storeproc (default: next to privnixd, else /usr/local/libexec/privnix)."`
	LogFormat  string           `name:"log-format" enum:"text,json" default:"text" help:"Log as logfmt text or JSON lines (${enum})."`
	Debug      bool             `help:"Log debug records too."`
	AuditLog   string           `name:"audit-log" placeholder:"PATH|stderr" default:"stderr" help:"Where the audit records go (connections accepted and refused, paths registered and deleted, builds with their build user, policy refusals): an absolute file name (JSON lines, appended, mode 0600, reopened on SIGHUP for log rotation), or stderr (a handler of its own beside the log, each record marked audit=true). Children's logs never go there, so their rate limit cannot drop an audit record."`
	CPUProfile string           `name:"cpuprofile" placeholder:"FILE" help:"Write a pprof CPU profile of the monitor to FILE until it stops (for make bench PROFILE=1)."`
}

func main() {
	var c cli
	kong.Parse(&c,
		kong.Name("privnixd"),
		kong.Description("The privnix daemon: a privilege-separated replacement for nix-daemon.\n\n"+
			"It reads nix.conf and NIX_STORE_DIR, NIX_STATE_DIR, NIX_LOG_DIR, NIX_CONF_DIR and NIX_DAEMON_SOCKET_PATH as nix-daemon does, "+
			"listens on the daemon socket (or takes it from systemd socket activation) and serves until SIGTERM or SIGINT.\n\n"+
			"SIGHUP rereads nix.conf and privnix.conf without dropping connections: open connections keep the settings they started with, "+
			"new ones take the new settings; a configuration that does not load is refused and the running one kept (the log says why)."),
		kong.Vars{"version": "privnixd (Nix) " + monitor.NixVersion},
	)
	log := newLogger(c.LogFormat, c.Debug)
	audit, auditFile, err := newAuditLogger(c.AuditLog, c.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "privnixd: audit log: %v\n", err)
		os.Exit(1)
	}
	err = run(c, log, audit, auditFile)
	auditFile.Close()
	if err != nil {
		log.Error("privnixd stopped", "err", err)
		fmt.Fprintf(os.Stderr, "privnixd: %v\n", err)
		os.Exit(1)
	}
}

func run(c cli, log, audit *slog.Logger, auditFile *reopenable) error {
	paths, err := monitor.PathsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	// nix.conf, then privnix.conf for privnix's own settings (Nix clients read
	// nix.conf too, and would warn about names they do not know).
	load := func() (*conf.Settings, []string, error) {
		return conf.LoadAll(paths.ConfFiles(), os.ReadFile, conf.Host{
			Root:    os.Geteuid() == 0,
			NumCPU:  runtime.NumCPU(),
			ConfDir: paths.ConfDir,
			// Nix 2.8: system-features has "kvm" when /dev/kvm is usable.
			KVM: syscall.Access("/dev/kvm", 6 /* R_OK|W_OK */) == nil,
		})
	}
	settings, warnings, err := load()
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn("nix.conf", "warning", w)
	}
	binDir := c.BinDir
	if binDir == "" {
		binDir = defaultBinDir()
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP: reopen the audit file (log rotation), then reload.
	hup, reload := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for s := range hup {
			if err := auditFile.Reopen(); err != nil {
				log.Error("reopening the audit log failed; still writing to the old file", "err", err)
			}
			reload <- s
		}
	}()
	return monitor.Run(ctx, monitor.Config{Paths: paths, BinDir: binDir, Settings: settings, Log: log, Audit: audit, Getenv: os.Getenv,
		Load: load, Reload: reload})
}

func defaultBinDir() string {
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, "privnix-frontend")); err == nil {
			return dir
		}
	}
	return "/usr/local/libexec/privnix"
}

func newLogger(format string, debug bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// newAuditLogger opens the audit sink: a file of JSON lines, or a handler of
// its own on stderr whose records say audit=true (the file is then nil).
func newAuditLogger(dest, format string) (*slog.Logger, *reopenable, error) {
	if dest == "stderr" {
		return newLogger(format, false).With("audit", true), nil, nil
	}
	if !filepath.IsAbs(dest) {
		return nil, nil, fmt.Errorf("--audit-log %q: want an absolute file name or stderr", dest)
	}
	f := &reopenable{path: dest}
	if err := f.Reopen(); err != nil {
		return nil, nil, err
	}
	return slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), f, nil
}

// reopenable is an append-only log file that SIGHUP reopens, so that
// logrotate can move it away and reload the service. A nil one does nothing.
type reopenable struct {
	path string
	mu   sync.Mutex // guards f
	f    *os.File
}

func (r *reopenable) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen opens the file's name again (created 0600 if missing, never through
// a symlink) and closes the old file.
func (r *reopenable) Reopen() error {
	if r == nil {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenable) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
