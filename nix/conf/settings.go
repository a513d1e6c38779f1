package conf

import (
	"fmt"
	"sort"
	"strings"
)

// SandboxMode is the value of the `sandbox` setting.
type SandboxMode uint8

// The three values Nix accepts for `sandbox`.
const (
	SandboxOn SandboxMode = iota
	SandboxOff
	SandboxRelaxed
)

func (m SandboxMode) String() string {
	switch m {
	case SandboxOff:
		return "false"
	case SandboxRelaxed:
		return "relaxed"
	}
	return "true"
}

// UIDRange is an inclusive range of numeric ids, written "LO-HI" in nix.conf.
type UIDRange struct{ Lo, Hi uint32 }

func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// Len is the number of ids in the range.
func (r UIDRange) Len() uint64 { return uint64(r.Hi) - uint64(r.Lo) + 1 }

// Contains reports whether id lies in the range.
func (r UIDRange) Contains(id uint32) bool { return id >= r.Lo && id <= r.Hi }

// Overlaps reports whether the two ranges share an id.
func (r UIDRange) Overlaps(o UIDRange) bool { return r.Lo <= o.Hi && o.Lo <= r.Hi }

// Settings holds the nix.conf settings the daemon acts on. Field comments give
// the setting's name; list settings keep their order, set settings are sorted
// and duplicate-free as in Nix.
type Settings struct {
	AllowedUsers         []string    // allowed-users
	TrustedUsers         []string    // trusted-users
	BuildUsersGroup      string      // build-users-group
	MaxJobs              uint32      // max-jobs ("auto" = number of CPUs)
	Cores                uint32      // cores
	Sandbox              SandboxMode // sandbox
	SandboxPaths         []string    // sandbox-paths (set)
	SandboxFallback      bool        // sandbox-fallback
	Substituters         []string    // substituters
	TrustedSubstituters  []string    // trusted-substituters (set)
	TrustedPublicKeys    []string    // trusted-public-keys
	SecretKeyFiles       []string    // secret-key-files
	RequireSigs          bool        // require-sigs
	KeepOutputs          bool        // keep-outputs
	KeepDerivations      bool        // keep-derivations
	KeepFailed           bool        // keep-failed
	KeepGoing            bool        // keep-going
	Fallback             bool        // fallback
	Substitute           bool        // substitute
	Timeout              int64       // timeout, seconds, 0 = none
	MaxSilentTime        int64       // max-silent-time, seconds, 0 = none
	MinFree              uint64      // min-free, bytes
	MaxFree              uint64      // max-free, bytes
	MaxBuildLogSize      uint64      // max-build-log-size, bytes, 0 = none
	System               string      // system
	ExtraPlatforms       []string    // extra-platforms (set)
	SystemFeatures       []string    // system-features (set)
	LogLines             uint64      // log-lines
	GCReservedSpace      int64       // gc-reserved-space, bytes
	Repeat               uint64      // repeat
	ConnectTimeout       uint64      // connect-timeout, seconds
	Builders             string      // builders
	BuildPollInterval    uint32      // build-poll-interval, seconds
	ExperimentalFeatures []string    // experimental-features (set)

	// privnix's own settings.
	FrontendUIDs          UIDRange // privnix-frontend-uids
	StoreprocUIDs         UIDRange // privnix-storeproc-uids
	BuildUIDs             UIDRange // privnix-build-uids: builds when build-users-group is empty
	MaxConnectionsPerUser uint32   // privnix-max-connections-per-user
	FrontendPool          uint32   // privnix-frontend-pool: pre-started frontends

	// Other holds the raw values of settings Nix 2.8 knows that privnix does not
	// model, by canonical name.
	Other map[string]string

	numCPU int // what "max-jobs = auto" means
}

// Host describes the machine, for the defaults that depend on it.
type Host struct {
	Root           bool     // the daemon runs as root: build-users-group defaults to "nixbld"
	NumCPU         int      // default cores, and max-jobs = auto
	System         string   // e.g. "x86_64-linux"; empty means "x86_64-linux"
	ExtraPlatforms []string // default extra-platforms (2.8 on x86_64: i686-linux and the x86_64-vN levels the CPU has)
	KVM            bool     // /dev/kvm is usable: system-features gains "kvm"
	ConfDir        string   // NIX_CONF_DIR, for the default of `builders`
}

// The default ranges of privnix's own ids (each 65536 ids, above 0x70000000).
var (
	DefaultFrontendUIDs  = UIDRange{1879048192, 1879113727}
	DefaultStoreprocUIDs = UIDRange{1879113728, 1879179263}
	DefaultBuildUIDs     = UIDRange{1879179264, 1879244799}
)

// DefaultTrustedPublicKey is cache.nixos.org's key, Nix's default trusted-public-keys.
const DefaultTrustedPublicKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

// Defaults returns the settings Nix 2.8 uses when nix.conf sets nothing, plus
// privnix's own defaults.
func Defaults(h Host) *Settings {
	cpus := h.NumCPU
	if cpus < 1 {
		cpus = 1
	}
	system := h.System
	if system == "" {
		system = "x86_64-linux"
	}
	features := []string{"benchmark", "big-parallel", "nixos-test"}
	if h.KVM {
		features = append(features, "kvm")
	}
	s := &Settings{
		AllowedUsers:          []string{"*"},
		TrustedUsers:          []string{"root"},
		MaxJobs:               1,
		Cores:                 uint32(cpus),
		Sandbox:               SandboxOn,
		SandboxPaths:          []string{},
		SandboxFallback:       true,
		Substituters:          []string{"https://cache.nixos.org/"},
		TrustedSubstituters:   []string{},
		TrustedPublicKeys:     []string{DefaultTrustedPublicKey},
		SecretKeyFiles:        []string{},
		RequireSigs:           true,
		KeepDerivations:       true,
		Substitute:            true,
		MaxFree:               ^uint64(0),
		System:                system,
		ExtraPlatforms:        normSet(h.ExtraPlatforms),
		SystemFeatures:        normSet(features),
		LogLines:              10,
		GCReservedSpace:       8 << 20,
		BuildPollInterval:     5,
		ExperimentalFeatures:  []string{},
		FrontendUIDs:          DefaultFrontendUIDs,
		StoreprocUIDs:         DefaultStoreprocUIDs,
		BuildUIDs:             DefaultBuildUIDs,
		MaxConnectionsPerUser: 64,
		FrontendPool:          4,
		Other:                 map[string]string{},
		numCPU:                cpus,
	}
	if h.Root {
		s.BuildUsersGroup = "nixbld"
	}
	if h.ConfDir != "" {
		s.Builders = "@" + strings.TrimSuffix(h.ConfDir, "/") + "/machines"
	}
	return s
}

// Clone returns a deep copy, for a connection's private view of the settings.
func (s *Settings) Clone() *Settings {
	c := *s
	for _, l := range []*[]string{&c.AllowedUsers, &c.TrustedUsers, &c.SandboxPaths, &c.Substituters,
		&c.TrustedSubstituters, &c.TrustedPublicKeys, &c.SecretKeyFiles, &c.ExtraPlatforms,
		&c.SystemFeatures, &c.ExperimentalFeatures} {
		*l = append([]string{}, (*l)...)
	}
	c.Other = make(map[string]string, len(s.Other))
	for k, v := range s.Other {
		c.Other[k] = v
	}
	return &c
}

// Validate checks what no single setting can: privnix's id ranges must be
// disjoint from each other, and the pool sizes must be usable.
func (s *Settings) Validate() error {
	ranges := []struct {
		name string
		r    UIDRange
	}{{"privnix-frontend-uids", s.FrontendUIDs}, {"privnix-storeproc-uids", s.StoreprocUIDs}, {"privnix-build-uids", s.BuildUIDs}}
	for i := range ranges {
		for j := i + 1; j < len(ranges); j++ {
			if ranges[i].r.Overlaps(ranges[j].r) {
				return fmt.Errorf("settings '%s' (%s) and '%s' (%s) overlap; privnix's id ranges must be disjoint",
					ranges[i].name, ranges[i].r, ranges[j].name, ranges[j].r)
			}
		}
	}
	if s.FrontendPool == 0 {
		return fmt.Errorf("setting 'privnix-frontend-pool' must be at least 1")
	}
	return nil
}

func normSet(v []string) []string {
	out := append([]string{}, v...)
	sort.Strings(out)
	n := 0
	for i, x := range out {
		if i == 0 || x != out[n-1] {
			out[n] = x
			n++
		}
	}
	return out[:n]
}
