package monitor

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"privnix/nix/conf"
	"privnix/nix/narinfo"
)

// snapshot is one generation of the configuration as the monitor applies it:
// read at start and again at each SIGHUP, never changed once published. A
// connection keeps the snapshot it was accepted under for its whole life, as
// a nix-daemon child keeps the settings it forked with; new connections take
// the newest one.
type snapshot struct {
	set     *conf.Settings
	keys    []narinfo.PublicKey // trusted-public-keys, parsed, and the signers' public halves (as Nix)
	signers []narinfo.SecretKey // secret-key-files, read and checked (sign.go)
}

func newSnapshot(set *conf.Settings, log *slog.Logger) *snapshot {
	s := &snapshot{set: set, signers: loadSigningKeys(set.SecretKeyFiles, log)}
	for _, k := range set.TrustedPublicKeys {
		pk, err := narinfo.ParsePublicKey(k)
		if err != nil {
			log.Warn("ignoring a trusted-public-keys entry that is not a key", "entry", k, "err", err)
			continue
		}
		s.keys = append(s.keys, pk)
	}
	for _, k := range s.signers {
		s.keys = append(s.keys, k.Public())
	}
	return s
}

// current is the newest configuration: the only way monitor code reads
// settings outside a connection.
func (m *Monitor) current() *snapshot { return m.snap.Load() }

// reloadOn rereads the configuration each time a value arrives on sig
// (privnixd's SIGHUP), until ctx ends.
func (m *Monitor) reloadOn(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			m.reload()
		}
	}
}

// reload reads nix.conf (and privnix.conf) again. A configuration that does
// not load or validate is refused as a whole: the running one stays and the
// log says why. Settings fixed at start (the uid ranges and the pool of the
// children already running) keep their running values. Connections already
// open are not touched; the next ones, and the next build's choice of build
// users (group members reread), take the new configuration.
func (m *Monitor) reload() {
	set, warnings, err := m.cfg.Load()
	if err != nil {
		m.audit.Error("configuration not reloaded: keeping the running one", "err", err)
		return
	}
	for _, w := range warnings {
		m.log.Warn("nix.conf", "warning", w)
	}
	old := m.current().set
	kept := keepStartOnly(old, set)
	if err := set.Validate(); err != nil {
		m.audit.Error("configuration not reloaded: keeping the running one", "err", err)
		return
	}
	if len(kept) > 0 {
		m.log.Warn("settings that take effect only when privnixd restarts keep their running values", "settings", strings.Join(kept, ","))
	}
	users.Forget()
	m.snap.Store(newSnapshot(set, m.log))
	m.builds.users.reread()
	m.audit.Info("configuration reloaded", "allowed_users", strings.Join(set.AllowedUsers, " "),
		"trusted_users", strings.Join(set.TrustedUsers, " "), "build_users_group", set.BuildUsersGroup)
}

// keepStartOnly copies into set the settings read only at start from old,
// and names those whose value the reload would have changed.
func keepStartOnly(old, set *conf.Settings) (changed []string) {
	if set.FrontendUIDs != old.FrontendUIDs {
		changed = append(changed, "privnix-frontend-uids")
	}
	if set.StoreprocUIDs != old.StoreprocUIDs {
		changed = append(changed, "privnix-storeproc-uids")
	}
	if set.FrontendPool != old.FrontendPool {
		changed = append(changed, "privnix-frontend-pool")
	}
	set.FrontendUIDs, set.StoreprocUIDs, set.FrontendPool = old.FrontendUIDs, old.StoreprocUIDs, old.FrontendPool
	return changed
}
