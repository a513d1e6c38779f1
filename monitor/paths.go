package monitor

import (
	"fmt"
	"path/filepath"
)

// Paths are the directories and files the daemon works on. They come from the
// same environment variables nix-daemon reads, so tests and admins can run
// privnixd on a private store.
type Paths struct {
	StoreDir   string // NIX_STORE_DIR, default /nix/store
	StateDir   string // NIX_STATE_DIR, default /nix/var/nix
	LogDir     string // NIX_LOG_DIR, default /nix/var/log/nix
	ConfDir    string // NIX_CONF_DIR, default /etc/nix
	SocketPath string // NIX_DAEMON_SOCKET_PATH, default <state>/daemon-socket/socket
}

// PathsFromEnv reads the NIX_* variables with nix-daemon's defaults.
func PathsFromEnv(getenv func(string) string) (Paths, error) {
	p := Paths{
		StoreDir: envOr(getenv, "NIX_STORE_DIR", "/nix/store"),
		StateDir: envOr(getenv, "NIX_STATE_DIR", "/nix/var/nix"),
		LogDir:   envOr(getenv, "NIX_LOG_DIR", "/nix/var/log/nix"),
		ConfDir:  envOr(getenv, "NIX_CONF_DIR", "/etc/nix"),
	}
	p.SocketPath = envOr(getenv, "NIX_DAEMON_SOCKET_PATH", filepath.Join(p.StateDir, "daemon-socket", "socket"))
	for name, v := range map[string]string{
		"NIX_STORE_DIR": p.StoreDir, "NIX_STATE_DIR": p.StateDir, "NIX_LOG_DIR": p.LogDir,
		"NIX_CONF_DIR": p.ConfDir, "NIX_DAEMON_SOCKET_PATH": p.SocketPath,
	} {
		if !filepath.IsAbs(v) || filepath.Clean(v) != v {
			return Paths{}, fmt.Errorf("%s=%q: must be an absolute, clean path", name, v)
		}
	}
	return p, nil
}

// ConfFile is the system nix.conf.
func (p Paths) ConfFile() string { return filepath.Join(p.ConfDir, "nix.conf") }

// PrivnixConfFile holds privnix's own settings (privnix-*), read after nix.conf.
func (p Paths) PrivnixConfFile() string { return filepath.Join(p.ConfDir, "privnix.conf") }

// StagingDir is where uploads and build outputs are staged before sealing:
// root-owned 0700, inside the store directory itself so that a sealed tree is
// renamed into place (never across a mount, even when the store is a bind
// mount); a name starting with '.' is never a store path.
func (p Paths) StagingDir() string { return filepath.Join(p.StoreDir, ".privnix-staging") }

// DBDir is where the monitor keeps its Badger database.
func (p Paths) DBDir() string { return filepath.Join(p.StateDir, "db", "privnix") }

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
