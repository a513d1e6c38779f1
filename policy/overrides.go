package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"privnix/nix/conf"
)

// Override is one (name, value) pair from a client's SetOptions.
type Override struct{ Name, Value string }

// untrustedOverridable are the settings nix-daemon 2.8 takes from any client
// (canonical names only: aliases such as build-timeout do not count).
var untrustedOverridable = map[string]bool{"timeout": true, "repeat": true, "connect-timeout": true}

// FilterOverrides decides which of a client's SetOptions overrides the
// connection applies, in order, and what to warn the client about. Names in
// apply are canonical; values in apply are valid for conf.Settings.Apply.
func FilterOverrides(trusted bool, overrides []Override, s *conf.Settings) (apply []Override, warnings []string) {
	for _, o := range overrides {
		o, ok, warns := filterOne(trusted, o, s)
		warnings = append(warnings, warns...)
		if !ok {
			continue
		}
		if err := s.Clone().Apply(o.Name, o.Value); err != nil {
			if !errors.Is(err, conf.ErrUnknownSetting) { // unknown names are silently ignored, as in Nix
				warnings = append(warnings, err.Error())
			}
			continue
		}
		apply = append(apply, o)
	}
	return apply, warnings
}

// filterOne applies nix-daemon 2.8's rules (docs/nix-protocol.md §7.3) to one override.
func filterOne(trusted bool, o Override, s *conf.Settings) (Override, bool, []string) {
	switch {
	case o.Name == "ssh-auth-sock", o.Name == "experimental-features", o.Name == "extra-experimental-features":
		return o, false, nil // never taken from clients
	case strings.HasPrefix(strings.TrimPrefix(o.Name, "extra-"), "privnix-") || o.Name == "plugin-files" || o.Name == "extra-plugin-files":
		// privnix: these shape the daemon itself, not one connection.
		return o, false, []string{fmt.Sprintf("ignoring the client-specified setting '%s', because it can only be set in the daemon's nix.conf", o.Name)}
	case trusted, untrustedOverridable[o.Name], o.Name == "builders" && o.Value == "":
		if c, ok := conf.Canonical(o.Name); ok {
			o.Name = c
		}
		return o, true, nil
	case o.Name == "substituters" || o.Name == "binary-caches":
		kept, warn := filterSubstituters(o.Value, s)
		return Override{"substituters", strings.Join(kept, " ")}, true, warn
	}
	return o, false, []string{fmt.Sprintf("ignoring the client-specified setting '%s', because it is a restricted setting and you are not a trusted user", o.Name)}
}

// filterSubstituters keeps the URLs the admin listed in substituters or
// trusted-substituters (URL+"/" counts as listed).
func filterSubstituters(value string, s *conf.Settings) (kept, warns []string) {
	for _, u := range strings.Fields(value) {
		if trustedSubstituter(u, s) {
			kept = append(kept, u)
		} else {
			warns = append(warns, fmt.Sprintf("ignoring untrusted substituter '%s'", u))
		}
	}
	return kept, warns
}

func trustedSubstituter(u string, s *conf.Settings) bool {
	for _, l := range [][]string{s.Substituters, s.TrustedSubstituters} {
		if slices.Contains(l, u) || slices.Contains(l, u+"/") {
			return true
		}
	}
	return false
}

// ClampJobs returns the max-jobs and cores a connection may use, from the
// values in the client's SetOptions fields. nix-daemon applies them for every
// client; privnix caps an untrusted client at the admin's values (cores 0
// means "all cores", which is more than any number unless the admin chose 0).
func ClampJobs(trusted bool, maxJobs, cores uint64, s *conf.Settings) (uint32, uint32) {
	if trusted {
		return uint32(min(maxJobs, 1<<32-1)), uint32(min(cores, 1<<32-1))
	}
	j := min(maxJobs, uint64(s.MaxJobs))
	c := cores
	if s.Cores != 0 && (c == 0 || c > uint64(s.Cores)) {
		c = uint64(s.Cores)
	}
	return uint32(j), uint32(min(c, 1<<32-1))
}
