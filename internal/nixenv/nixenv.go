// Package nixenv names the directories and files of a Nix installation as
// nix-daemon finds them: from NIX_STORE_DIR, NIX_STATE_DIR, NIX_LOG_DIR,
// NIX_CONF_DIR and NIX_DAEMON_SOCKET_PATH, with nix-daemon's defaults. privnixd
// and the privnix CLI read them through this one package.
package nixenv

import (
	"fmt"
	"path/filepath"
)

// Paths are the directories and files privnixd works on.
type Paths struct {
	StoreDir   string // NIX_STORE_DIR, default /nix/store
	StateDir   string // NIX_STATE_DIR, default /nix/var/nix
	LogDir     string // NIX_LOG_DIR, default /nix/var/log/nix
	ConfDir    string // NIX_CONF_DIR, default /etc/nix
	SocketPath string // NIX_DAEMON_SOCKET_PATH, default <state>/daemon-socket/socket
}

// PathsFromEnv reads the NIX_* variables with nix-daemon's defaults; every
// value must be an absolute, clean path.
func PathsFromEnv(getenv func(string) string) (Paths, error) {
	p := Paths{
		StoreDir: envOr(getenv, "NIX_STORE_DIR", "/nix/store"),
		StateDir: envOr(getenv, "NIX_STATE_DIR", "/nix/var/nix"),
		LogDir:   envOr(getenv, "NIX_LOG_DIR", "/nix/var/log/nix"),
		ConfDir:  envOr(getenv, "NIX_CONF_DIR", "/etc/nix"),
	}
	p.SocketPath = envOr(getenv, "NIX_DAEMON_SOCKET_PATH", filepath.Join(p.StateDir, "daemon-socket", "socket"))
	for _, v := range []struct{ name, val string }{
		{"NIX_STORE_DIR", p.StoreDir}, {"NIX_STATE_DIR", p.StateDir}, {"NIX_LOG_DIR", p.LogDir},
		{"NIX_CONF_DIR", p.ConfDir}, {"NIX_DAEMON_SOCKET_PATH", p.SocketPath},
	} {
		if !filepath.IsAbs(v.val) || filepath.Clean(v.val) != v.val {
			return Paths{}, fmt.Errorf("%s=%q: must be an absolute, clean path", v.name, v.val)
		}
	}
	return p, nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// NixConf is the system nix.conf, which Nix clients read too.
func (p Paths) NixConf() string { return filepath.Join(p.ConfDir, "nix.conf") }

// PrivnixConf holds privnix's own settings (privnix-*), read after nix.conf,
// so that Nix clients reading nix.conf never warn about names they do not know.
func (p Paths) PrivnixConf() string { return filepath.Join(p.ConfDir, "privnix.conf") }

// ConfFiles are the settings files in the order privnixd reads them.
func (p Paths) ConfFiles() []string { return []string{p.NixConf(), p.PrivnixConf()} }

// SocketDir is the directory whose mode decides who can reach the socket.
func (p Paths) SocketDir() string { return filepath.Dir(p.SocketPath) }

// AdminSocket is privnixd's root-only socket for `privnix status`, beside
// the daemon socket.
func (p Paths) AdminSocket() string { return filepath.Join(p.SocketDir(), "privnix-admin") }

// DBDir is where privnixd keeps its Badger database.
func (p Paths) DBDir() string { return filepath.Join(p.StateDir, "db", "privnix") }

// StagingDir is where uploads and build outputs are staged before sealing:
// root-owned 0700, inside the store directory itself so that a sealed tree is
// renamed into place (never across a mount, even when the store is a bind
// mount); a name starting with '.' is never a store path.
func (p Paths) StagingDir() string { return filepath.Join(p.StoreDir, ".privnix-staging") }
