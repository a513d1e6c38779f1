package conf

// setting describes one modelled setting: its canonical name, the old names
// Nix 2.8 still accepts for it, and where its value lives.
type setting struct {
	name    string
	aliases []string
	field   func(*Settings) any // a pointer to the field (setPtr and maxJobsPtr for the special cases)
}

type setPtr struct{ p *[]string }
type maxJobsPtr struct {
	p    *uint32
	cpus int
}

// table lists the settings privnix acts on. Aliases were checked one by one
// against `nix show-config` of Nix 2.8.0.
var table = []setting{
	{"allowed-users", nil, func(s *Settings) any { return &s.AllowedUsers }},
	{"trusted-users", nil, func(s *Settings) any { return &s.TrustedUsers }},
	{"build-users-group", nil, func(s *Settings) any { return &s.BuildUsersGroup }},
	{"max-jobs", []string{"build-max-jobs"}, func(s *Settings) any { return maxJobsPtr{&s.MaxJobs, s.numCPU} }},
	{"cores", []string{"build-cores"}, func(s *Settings) any { return &s.Cores }},
	{"sandbox", []string{"build-use-sandbox", "build-use-chroot"}, func(s *Settings) any { return &s.Sandbox }},
	{"sandbox-paths", []string{"build-sandbox-paths", "build-chroot-dirs"}, func(s *Settings) any { return setPtr{&s.SandboxPaths} }},
	{"sandbox-fallback", nil, func(s *Settings) any { return &s.SandboxFallback }},
	{"substituters", []string{"binary-caches"}, func(s *Settings) any { return &s.Substituters }},
	{"trusted-substituters", []string{"trusted-binary-caches"}, func(s *Settings) any { return setPtr{&s.TrustedSubstituters} }},
	{"trusted-public-keys", []string{"binary-cache-public-keys"}, func(s *Settings) any { return &s.TrustedPublicKeys }},
	{"secret-key-files", nil, func(s *Settings) any { return &s.SecretKeyFiles }},
	{"require-sigs", nil, func(s *Settings) any { return &s.RequireSigs }},
	{"keep-outputs", []string{"gc-keep-outputs"}, func(s *Settings) any { return &s.KeepOutputs }},
	{"keep-derivations", []string{"gc-keep-derivations"}, func(s *Settings) any { return &s.KeepDerivations }},
	{"keep-failed", nil, func(s *Settings) any { return &s.KeepFailed }},
	{"keep-going", nil, func(s *Settings) any { return &s.KeepGoing }},
	{"fallback", []string{"build-fallback"}, func(s *Settings) any { return &s.Fallback }},
	{"substitute", []string{"build-use-substitutes"}, func(s *Settings) any { return &s.Substitute }},
	{"timeout", []string{"build-timeout"}, func(s *Settings) any { return &s.Timeout }},
	{"max-silent-time", []string{"build-max-silent-time"}, func(s *Settings) any { return &s.MaxSilentTime }},
	{"min-free", nil, func(s *Settings) any { return &s.MinFree }},
	{"max-free", nil, func(s *Settings) any { return &s.MaxFree }},
	{"max-build-log-size", []string{"build-max-log-size"}, func(s *Settings) any { return &s.MaxBuildLogSize }},
	{"system", nil, func(s *Settings) any { return &s.System }},
	{"extra-platforms", nil, func(s *Settings) any { return setPtr{&s.ExtraPlatforms} }},
	{"system-features", nil, func(s *Settings) any { return setPtr{&s.SystemFeatures} }},
	{"log-lines", nil, func(s *Settings) any { return &s.LogLines }},
	{"gc-reserved-space", nil, func(s *Settings) any { return &s.GCReservedSpace }},
	{"repeat", []string{"build-repeat"}, func(s *Settings) any { return &s.Repeat }},
	{"connect-timeout", nil, func(s *Settings) any { return &s.ConnectTimeout }},
	{"builders", nil, func(s *Settings) any { return &s.Builders }},
	{"build-poll-interval", nil, func(s *Settings) any { return &s.BuildPollInterval }},
	{"experimental-features", nil, func(s *Settings) any { return setPtr{&s.ExperimentalFeatures} }},

	{"privnix-frontend-uids", nil, func(s *Settings) any { return &s.FrontendUIDs }},
	{"privnix-storeproc-uids", nil, func(s *Settings) any { return &s.StoreprocUIDs }},
	{"privnix-build-uids", nil, func(s *Settings) any { return &s.BuildUIDs }},
	{"privnix-max-connections-per-user", nil, func(s *Settings) any { return &s.MaxConnectionsPerUser }},
	{"privnix-frontend-pool", nil, func(s *Settings) any { return &s.FrontendPool }},
}

// otherSettings are the remaining settings of Nix 2.8.0 (from `nix show-config`)
// and their aliases. privnix keeps their raw values in Settings.Other and does
// not warn about them. true marks list settings, which accept an extra- prefix.
var otherSettings = map[string]bool{
	"accept-flake-config": false, "access-tokens": true, "allow-dirty": false,
	"allow-import-from-derivation": false, "allow-new-privileges": false,
	"allow-symlinked-store": false, "allow-unsafe-native-code-during-evaluation": false,
	"allowed-impure-host-deps": true, "allowed-uris": true, "auto-optimise-store": false,
	"bash-prompt": false, "bash-prompt-suffix": false, "build-hook": false,
	"builders-use-substitutes": false, "commit-lockfile-summary": false,
	"compress-build-log": false, "diff-hook": false, "download-attempts": false,
	"enforce-determinism": false, "eval-cache": false, "filter-syscalls": false,
	"flake-registry": false, "fsync-metadata": false, "hashed-mirrors": true,
	"http-connections": false, "http2": false, "ignored-acls": true,
	"impersonate-linux-26": false, "keep-build-log": false, "keep-env-derivations": false,
	"min-free-check-interval": false, "nar-buffer-size": false,
	"narinfo-cache-negative-ttl": false, "narinfo-cache-positive-ttl": false,
	"netrc-file": false, "nix-path": true, "plugin-files": true, "post-build-hook": false,
	"pre-build-hook": false, "preallocate-contents": false, "print-missing": false,
	"pure-eval": false, "restrict-eval": false, "run-diff-hook": false,
	"sandbox-build-dir": false, "sandbox-dev-shm-size": false, "show-trace": false,
	"stalled-download-timeout": false, "store": false, "sync-before-registering": false,
	"tarball-ttl": false, "trace-function-calls": false, "use-case-hack": false,
	"use-registries": false, "use-sqlite-wal": false, "user-agent-suffix": false,
	"warn-dirty": false, "ssl-cert-file": false,
}

// otherAliases maps old names of unmodelled settings to their canonical names.
var otherAliases = map[string]string{
	"env-keep-derivations":       "keep-env-derivations",
	"build-compress-log":         "compress-build-log",
	"build-keep-log":             "keep-build-log",
	"build-impersonate-linux-26": "impersonate-linux-26",
}

var index = func() map[string]*setting {
	m := map[string]*setting{}
	for i := range table {
		m[table[i].name] = &table[i]
		for _, a := range table[i].aliases {
			m[a] = &table[i]
		}
	}
	return m
}()

// Canonical returns the canonical name of a Nix 2.8 or privnix setting given by
// its name or an alias, and whether the name is known. An "extra-" prefix is
// not resolved here.
func Canonical(name string) (string, bool) {
	if s, ok := index[name]; ok {
		return s.name, true
	}
	if c, ok := otherAliases[name]; ok {
		return c, true
	}
	if _, ok := otherSettings[name]; ok {
		return name, true
	}
	return "", false
}

// Names returns the canonical names of the settings privnix models, in table order.
func Names() []string {
	out := make([]string, len(table))
	for i := range table {
		out[i] = table[i].name
	}
	return out
}
