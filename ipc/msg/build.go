//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"
	"path"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// The build channel: one buildproc (cmd/privnix-build) per build. The monitor
// has already decided everything — derivation, build user, sandbox mode,
// environment — and prepared, as root, a per-build tree under a root-owned
// 0700 parent on the store's filesystem:
//
//	<buildroot>/store  root-owned, mode 0755, empty: becomes the build's view
//	                   of the store (the buildproc creates the input mount
//	                   points in it, then hands it to the build user)
//	<buildroot>/build  owned by the build user, mode 0700, empty: $NIX_BUILD_TOP
//
//	monitor                                        buildproc (root, new mount/PID/IPC/UTS[/net] namespaces)
//	  spawn ──────────────────────────────────────▶ (exec)
//	  ◀───────────────────────────────────────────── Hello
//	  ── BuildJob + [store view dir, build dir, log pipe write end] ─▶
//	  ── BuildJobMore ─▶ …  (while the previous one said More)
//	                                                 mounts, pivot_root, drop to the build user,
//	                                                 write Files, NNP, Landlock, seccomp
//	  ◀───────────────────────────────────────────── SandboxReady   (right before execve)
//	                                                 | SandboxFailed (then exit 1)
//	  (pidfd/wait: the builder's exit status; the builder never speaks on this
//	   channel: its fd is close-on-exec)
//
// The builder's exit status comes only from the monitor's wait on the pidfd,
// never from a message.
const (
	KindBuildJob      Kind = 0x0401 // the monitor's answer to the buildproc's Hello
	KindBuildJobMore  Kind = 0x0403 // continues a BuildJob whose More was set
	KindSandboxReady  Kind = 0x0400 // the buildproc is about to execve the builder
	KindSandboxFailed Kind = 0x0402 // the sandbox could not be set up; the buildproc exits
)

// Sandbox modes (BuildJob.Sandbox). nix.conf's "relaxed" is decided by the
// monitor per derivation and arrives as one of these.
const (
	SandboxOn  uint64 = 1 // a new root holding only the inputs, sandbox paths, /dev, /proc, /tmp, /etc stubs
	SandboxOff uint64 = 2 // the host filesystem read-only, plus the same store view, a private /tmp and /dev/shm
)

// Limits of one build's job (over BuildJob and every BuildJobMore).
const (
	MaxEnvVars      = 4096      // environment entries
	MaxEnvBytes     = 4 << 20   // bytes of all keys and values (the kernel's limit is lower: ARG_MAX)
	MaxArgStrLen    = 128 << 10 // one argument or "key=value" (the kernel's MAX_ARG_STRLEN)
	MaxBuildInputs  = 1 << 16   // input paths
	MaxOutputs      = 64        // outputs of one derivation
	MaxSandboxPaths = 256       // sandbox-paths entries
	MaxBuildFiles   = 256       // chunks of files written into the build directory
	MaxBuildFileLen = 64 << 20  // bytes of all files together
	MaxPathLen      = 4096      // an absolute path in the sandbox or on the host
)

// KV is one environment variable.
type KV struct {
	_msgpack struct{} `msgpack:",as_array"`
	Key      string
	Value    string
}

// KVs is a list of at most MaxEnvVars environment variables.
type KVs []KV

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *KVs) DecodeMsgpack(d *msgpack.Decoder) error { return DecodeList(d, MaxEnvVars, (*[]KV)(s)) }

// Validate checks the count and every entry: a key of 1..MaxShort bytes
// without '=' or NUL, a value without NUL, each pair below MaxArgStrLen.
func (s KVs) Validate() error {
	if len(s) > MaxEnvVars {
		return fmt.Errorf("%d variables, at most %d", len(s), MaxEnvVars)
	}
	for i, kv := range s {
		if kv.Key == "" || len(kv.Key) > MaxShort || strings.ContainsAny(kv.Key, "=\x00") {
			return fmt.Errorf("[%d]: bad variable name %q", i, kv.Key)
		}
		if strings.IndexByte(kv.Value, 0) >= 0 || len(kv.Key)+1+len(kv.Value) >= MaxArgStrLen {
			return fmt.Errorf("[%d] %s: value with NUL or longer than %d bytes", i, kv.Key, MaxArgStrLen)
		}
	}
	return nil
}

// BuildOutput is one output of the derivation and the path it is built at.
type BuildOutput struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Path     StorePath
}

// BuildOutputs is a list of at most MaxOutputs outputs.
type BuildOutputs []BuildOutput

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *BuildOutputs) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxOutputs, (*[]BuildOutput)(s))
}

// SandboxPath is one sandbox-paths entry: Source on the host is bind-mounted
// read-only at Target in the sandbox. Optional ("?" in nix.conf): a missing
// Source is skipped.
type SandboxPath struct {
	_msgpack struct{} `msgpack:",as_array"`
	Target   string
	Source   string
	Optional bool
}

// SandboxPathList is a list of at most MaxSandboxPaths entries.
type SandboxPathList []SandboxPath

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *SandboxPathList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxSandboxPaths, (*[]SandboxPath)(s))
}

// BuildFile is a chunk of a file the buildproc writes into the build
// directory after dropping to the build user (passAsFile's .attr-<hash>,
// .attrs.json, .attrs.sh): the first chunk of a name creates the file
// (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), later chunks of the same name are
// appended, so a file larger than a frame spans BuildJobMore messages.
type BuildFile struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string   // one path component
	Data     string   // any bytes
}

// BuildFiles is a list of at most MaxBuildFiles chunks.
type BuildFiles []BuildFile

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *BuildFiles) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxBuildFiles, (*[]BuildFile)(s))
}

// BuildJob answers a buildproc's Hello with the build, and three fds:
//
//	[0] the build's store view: <buildroot>/store, a directory owned by root,
//	    mode 0755 (no group/other write), empty, on the store's filesystem.
//	    Mounted at StoreDir; the outputs are created in it by the builder.
//	[1] the build directory: owned by UID, mode 0700, empty. Mounted at
//	    BuildTop.
//	[2] the write end of the log pipe: the builder's stdout and stderr.
//
// Builder, Args and Env are exactly what is exec'd (argv[0] is the base name
// of Builder, as in Nix); the buildproc adds nothing to the environment.
// InputPaths is the input closure (plus the closures of the sandbox paths),
// each bind-mounted read-only at its own path. Outputs must not be among the
// inputs. If More is set, BuildJobMore messages follow, the last with More
// unset; their lists are appended to this job's.
type BuildJob struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Builder      string
	Args         Strings
	Env          KVs
	InputPaths   StorePaths
	Outputs      BuildOutputs
	StoreDir     string
	UID, GID     uint32 // the build user; never 0
	Sandbox      uint64 // SandboxOn or SandboxOff
	SandboxPaths SandboxPathList
	Network      bool   // fixed-output: the host's network (the monitor then starts us without CLONE_NEWNET)
	BuildTop     string // where the builder sees the build directory: any absolute path with SandboxOn ("/build"), beneath /tmp with SandboxOff
	Files        BuildFiles
	More         bool
	// UserNS: the monitor is not root; the buildproc runs in a user
	// namespace where only UID:GID are mapped (to the monitor's ids), with
	// ambient capabilities for the set-up, instead of as root.
	UserNS bool
}

func (BuildJob) Kind() Kind { return KindBuildJob }
func (m BuildJob) Validate() error {
	if m.UID == 0 || m.GID == 0 {
		return fmt.Errorf("build user %d:%d: never root", m.UID, m.GID)
	}
	if m.Sandbox != SandboxOn && m.Sandbox != SandboxOff {
		return fmt.Errorf("sandbox mode %d out of range", m.Sandbox)
	}
	if err := field("StoreDir", ValidStoreDir(m.StoreDir)); err != nil {
		return err
	}
	if err := field("Builder", ValidAbsPath(m.Builder)); err != nil {
		return err
	}
	if err := field("BuildTop", ValidAbsPath(m.BuildTop)); err != nil {
		return err
	}
	if m.BuildTop == "/" || m.BuildTop == m.StoreDir || strings.HasPrefix(m.BuildTop+"/", m.StoreDir+"/") ||
		strings.HasPrefix(m.StoreDir+"/", m.BuildTop+"/") {
		return fmt.Errorf("BuildTop %q overlaps the store %q", m.BuildTop, m.StoreDir)
	}
	if m.Sandbox == SandboxOff && (!strings.HasPrefix(m.BuildTop, "/tmp/") || strings.Count(m.BuildTop, "/") != 2) {
		return fmt.Errorf("BuildTop %q: without a sandbox it must be a directory directly in /tmp", m.BuildTop)
	}
	if len(m.Outputs) == 0 || len(m.Outputs) > MaxOutputs {
		return fmt.Errorf("%d outputs, want 1..%d", len(m.Outputs), MaxOutputs)
	}
	seen := map[string]bool{}
	for i, o := range m.Outputs {
		if err := ValidName(o.Name); err != nil || seen[o.Name] || seen[string(o.Path)] {
			return field("Outputs", fmt.Errorf("[%d]: bad or repeated output %q", i, o.Name))
		}
		seen[o.Name], seen[string(o.Path)] = true, true
		if err := ValidStorePath(m.StoreDir, o.Path); err != nil {
			return field("Outputs", fmt.Errorf("[%d]: %w", i, err))
		}
	}
	if err := field("Args", m.Args.Validate(MaxStrings, func(s string) error {
		if strings.IndexByte(s, 0) >= 0 || len(s) >= MaxArgStrLen {
			return fmt.Errorf("argument with NUL or of %d bytes", len(s))
		}
		return nil
	})); err != nil {
		return err
	}
	return m.validateLists()
}

func (m BuildJob) validateLists() error {
	return validateBuildLists(m.StoreDir, m.Env, m.InputPaths, m.SandboxPaths, m.Files)
}

func validateBuildLists(storeDir string, env KVs, inputs StorePaths, sp SandboxPathList, files BuildFiles) error {
	if err := field("Env", env.Validate()); err != nil {
		return err
	}
	if err := field("InputPaths", inputs.Validate()); err != nil {
		return err
	}
	if storeDir != "" {
		for i, p := range inputs {
			if err := ValidStorePath(storeDir, p); err != nil {
				return field("InputPaths", fmt.Errorf("[%d]: %w", i, err))
			}
		}
	}
	if len(sp) > MaxSandboxPaths {
		return fmt.Errorf("%d sandbox paths, at most %d", len(sp), MaxSandboxPaths)
	}
	for i, s := range sp {
		if err := firstErr(ValidAbsPath(s.Target), ValidAbsPath(s.Source)); err != nil {
			return field("SandboxPaths", fmt.Errorf("[%d]: %w", i, err))
		}
		if s.Target == "/" {
			return field("SandboxPaths", fmt.Errorf("[%d]: target /", i))
		}
	}
	if len(files) > MaxBuildFiles {
		return fmt.Errorf("%d file chunks, at most %d", len(files), MaxBuildFiles)
	}
	for i, f := range files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || len(f.Name) > MaxNarNameLen || strings.ContainsAny(f.Name, "/\x00") {
			return field("Files", fmt.Errorf("[%d]: bad file name %q", i, f.Name))
		}
	}
	return nil
}

// ValidAbsPath checks an absolute, clean path of at most MaxPathLen bytes
// without NUL.
func ValidAbsPath(p string) error {
	if p == "" || p[0] != '/' || len(p) > MaxPathLen || strings.IndexByte(p, 0) >= 0 || path.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	return nil
}

// BuildJobMore continues a BuildJob: its lists are appended to the job's.
// Store paths are checked against the channel's store directory by ipc.
type BuildJobMore struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Env          KVs
	InputPaths   StorePaths
	SandboxPaths SandboxPathList
	Files        BuildFiles
	More         bool
}

func (BuildJobMore) Kind() Kind { return KindBuildJobMore }
func (m BuildJobMore) Validate() error {
	return validateBuildLists("", m.Env, m.InputPaths, m.SandboxPaths, m.Files)
}

// SandboxReady: the sandbox is complete and the buildproc, now the build
// user, confined, is about to execve the builder. Sent last on the channel.
type SandboxReady struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (SandboxReady) Kind() Kind      { return KindSandboxReady }
func (SandboxReady) Validate() error { return nil }

// SandboxFailed: a step of the set-up failed; the buildproc exits 1 without
// running the builder. Stage names the step (buildproc's stage names), Errno
// the system error if there was one (0 otherwise), Message says what failed,
// for the log.
type SandboxFailed struct {
	_msgpack struct{} `msgpack:",as_array"`
	Stage    string
	Errno    uint64
	Message  string
}

func (SandboxFailed) Kind() Kind { return KindSandboxFailed }
func (m SandboxFailed) Validate() error {
	if m.Errno > 4095 {
		return fmt.Errorf("errno %d out of range", m.Errno)
	}
	return firstErr(field("Stage", Printable(m.Stage, MaxShort)), field("Message", MaxLen(m.Message, MaxText)))
}

var buildTable = []Spec{
	row[BuildJob](3),
	row[BuildJobMore](0),
	row[SandboxReady](0),
	row[SandboxFailed](0),
}
