package monitor

import (
	"log/slog"

	"privnix/nix/conf"
	"privnix/nix/narinfo"
)

// snapshot is one generation of the configuration as the monitor applies it:
// read at start and again at each SIGHUP, never changed once published. A
// connection keeps the snapshot it was accepted under for its whole life, as
// a nix-daemon child keeps the settings it forked with; new connections take
// the newest one.
type snapshot struct {
	set  *conf.Settings
	keys []narinfo.PublicKey // trusted-public-keys, parsed
}

func newSnapshot(set *conf.Settings, log *slog.Logger) *snapshot {
	s := &snapshot{set: set}
	for _, k := range set.TrustedPublicKeys {
		pk, err := narinfo.ParsePublicKey(k)
		if err != nil {
			log.Warn("ignoring a trusted-public-keys entry that is not a key", "entry", k, "err", err)
			continue
		}
		s.keys = append(s.keys, pk)
	}
	return s
}

// current is the newest configuration: the only way monitor code reads
// settings outside a connection.
func (m *Monitor) current() *snapshot { return m.snap.Load() }
