// Package admin is the logic behind the administrator's commands of the
// privnix CLI: reading the settings as privnixd does, setting a machine up as
// the Nix manual's multi-user installation asks (setup), and checking such a
// set-up (doctor).
package admin

import (
	"os"
	"runtime"

	"privnix/internal/nixenv"
	"privnix/nix/conf"
)

// Paths are the directories and files privnixd works on (package nixenv,
// which privnixd reads them through too).
type Paths = nixenv.Paths

// PathsFromEnv reads the NIX_* variables with nix-daemon's defaults.
var PathsFromEnv = nixenv.PathsFromEnv

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
