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

// otherKind is how an unmodelled setting's value is checked.
type otherKind uint8

const (
	otherString otherKind = iota
	otherBool
	otherUint64
	otherUint32
	otherList // accepts an extra- prefix
)

// otherSettings are the remaining settings of Nix 2.8.0 (from `nix show-config`),
// with their value types. privnix checks their values as Nix does, keeps them in
// Settings.Other and does not warn about them.
var otherSettings = map[string]otherKind{
	"accept-flake-config": otherBool, "allow-dirty": otherBool,
	"allow-import-from-derivation": otherBool, "allow-new-privileges": otherBool,
	"allow-symlinked-store": otherBool, "allow-unsafe-native-code-during-evaluation": otherBool,
	"auto-optimise-store": otherBool, "builders-use-substitutes": otherBool,
	"compress-build-log": otherBool, "enforce-determinism": otherBool, "eval-cache": otherBool,
	"filter-syscalls": otherBool, "fsync-metadata": otherBool, "http2": otherBool,
	"impersonate-linux-26": otherBool, "keep-build-log": otherBool, "keep-env-derivations": otherBool,
	"preallocate-contents": otherBool, "print-missing": otherBool, "pure-eval": otherBool,
	"restrict-eval": otherBool, "run-diff-hook": otherBool, "show-trace": otherBool,
	"sync-before-registering": otherBool, "trace-function-calls": otherBool,
	"use-case-hack": otherBool, "use-registries": otherBool, "use-sqlite-wal": otherBool,
	"warn-dirty":        otherBool,
	"download-attempts": otherUint64, "http-connections": otherUint64,
	"min-free-check-interval": otherUint64, "nar-buffer-size": otherUint64,
	"narinfo-cache-negative-ttl": otherUint64, "narinfo-cache-positive-ttl": otherUint64,
	"stalled-download-timeout": otherUint64,
	"tarball-ttl":              otherUint32,
	"access-tokens":            otherList, "allowed-impure-host-deps": otherList, "allowed-uris": otherList,
	"hashed-mirrors": otherList, "ignored-acls": otherList, "nix-path": otherList,
	"plugin-files": otherList,
	"bash-prompt":  otherString, "bash-prompt-suffix": otherString, "build-hook": otherString,
	"commit-lockfile-summary": otherString, "diff-hook": otherString, "flake-registry": otherString,
	"netrc-file": otherString, "post-build-hook": otherString, "pre-build-hook": otherString,
	"sandbox-build-dir": otherString, "sandbox-dev-shm-size": otherString,
	"store": otherString, "user-agent-suffix": otherString,
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
