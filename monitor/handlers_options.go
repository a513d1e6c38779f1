package monitor

import (
	"os"

	"privnix/ipc/msg"
	"privnix/nix/conf"
	"privnix/policy"
)

// handleSetOptions applies nix-daemon's SetOptions policy to the client's
// overrides: a trusted user gets them all; anyone else only the few Nix
// allows, and substituters filtered to those the admin trusts. The result is
// the connection's own settings (builds and substitution read them); the
// client is told what was ignored.
func handleSetOptions(s *session, req msg.Message, _ []*os.File) (reply, error) {
	o := req.(*msg.SetOptions)
	overrides := make([]policy.Override, len(o.Overrides))
	for i, ov := range o.Overrides {
		overrides[i] = policy.Override{Name: ov.Name, Value: ov.Value}
	}
	apply, warnings := policy.FilterOverrides(s.trusted, overrides, s.snap.set)
	set := s.snap.set.Clone()
	for _, a := range apply {
		if err := set.Apply(a.Name, a.Value); err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	set.MaxJobs, set.Cores = policy.ClampJobs(s.trusted, o.MaxJobs, o.Cores, set)
	set.KeepGoing, set.KeepFailed, set.Fallback = o.KeepGoing, o.KeepFailed, o.Fallback
	set.Substitute = o.Substitute
	if o.MaxSilent != 0 {
		set.MaxSilentTime = int64(o.MaxSilent)
	}
	s.setSettings(set)
	return answer(&msg.Warnings{Texts: warnings}), nil
}

// settings is the connection's view of nix.conf after SetOptions.
func (s *session) settings() *conf.Settings {
	s.optMu.Lock()
	defer s.optMu.Unlock()
	if s.opts == nil {
		return s.snap.set
	}
	return s.opts
}

func (s *session) setSettings(c *conf.Settings) {
	s.optMu.Lock()
	s.opts = c
	s.optMu.Unlock()
}
