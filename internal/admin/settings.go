// Package admin is the logic behind the administrator's commands of the
// privnix CLI: reading the settings as privnixd does, setting a machine up as
// the Nix manual's multi-user installation asks (setup), and checking such a
// set-up (doctor).
package admin

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"privnix/nix/conf"
)

// Paths are the directories and files privnixd works on, from the same NIX_*
// environment variables with nix-daemon's defaults. It is monitor.Paths
// again: importing monitor would link the daemon into the CLI.
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

// DBDir is the directory of privnixd's own database (monitor.Paths.DBDir).
func (p Paths) DBDir() string { return filepath.Join(p.StateDir, "db", "privnix") }

// DaemonHost is how privnixd sees its host when it loads the settings: as
// root (the daemon's defaults, e.g. build-users-group = nixbld, do not depend
// on who runs the CLI).
func DaemonHost(p Paths) conf.Host {
	return conf.Host{Root: true, NumCPU: runtime.NumCPU(), ConfDir: p.ConfDir}
}

// LoadSettings reads the NIX_* environment through getenv and then nix.conf
// and privnix.conf from NIX_CONF_DIR, in that order, exactly as privnixd
// does; a missing file is skipped. The warnings are the files' (unknown
// settings and the like), each prefixed with "file:line: ".
func LoadSettings(getenv func(string) string) (*conf.Settings, Paths, []string, error) {
	p, err := PathsFromEnv(getenv)
	if err != nil {
		return nil, Paths{}, nil, err
	}
	s, warnings, err := conf.LoadAll(p.ConfFiles(), os.ReadFile, DaemonHost(p))
	if err != nil {
		return nil, p, warnings, err
	}
	return s, p, warnings, nil
}
