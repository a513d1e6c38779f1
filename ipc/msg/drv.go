//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Derivations and builds.
//
// The monitor never parses a .drv: a storeproc does (DESIGN.md, "The monitor
// serializes; it does not parse"). The monitor reads the .drv file itself and
// hands the bytes to a storeproc over a pipe; the storeproc answers with the
// derivation as lists, split over several Drv messages when it does not fit
// one frame; the monitor prints it back and requires the file's bytes.
//
//	monitor                                         storeproc (fresh uid)
//	  spawn ───────────────────────────────────────▶ (exec)
//	  ◀──────────────────────────────────────────── Hello
//	  ── ParseDrv{MaxSize} + [read end of a pipe] ─▶ (the monitor writes the .drv bytes and closes)
//	  ◀──────────────────────── Drv{More} ... Drv ── | Error
//	  ── ParseDrv ... (the next .drv of the walk)
//	  (closes the channel: the storeproc exits)
//
// Frontend channel: QueryDrvOutputs → DrvOutputs | Error;
// Build → BuildEvent* then BuildResults | Error.
const (
	// frontend channel (0x0260–0x027f)
	KindQueryDrvOutputs Kind = 0x0260
	KindDrvOutputs      Kind = 0x0261
	KindBuild           Kind = 0x0262 // answered with BuildEvent messages, then BuildResults or Error
	KindBuildEvent      Kind = 0x0263
	KindBuildResults    Kind = 0x0265
	KindQueryMissing    Kind = 0x0266 // answered with Missing or Error
	KindMissing         Kind = 0x0267

	// storeproc channel (0x0310–0x031f)
	KindParseDrv Kind = 0x0311 // the monitor's answer to Hello, and each next job
	KindDrv      Kind = 0x0313 // the storeproc's answer to ParseDrv (or Error)
)

// Limits of the derivation exchange.
const (
	MaxDrvSize    = 32 << 20 // bytes of a .drv file
	MaxDrvItems   = 1 << 16  // entries of one list in one Drv message
	MaxDrvString  = 96 << 10 // one string in one Drv message (env values are split)
	MaxDrvOutputs = 256      // outputs of one derivation
)

// ParseDrv asks the storeproc to parse the .drv bytes it reads from the pipe
// (its one fd) until EOF; more than MaxSize bytes is refused.
type ParseDrv struct {
	_msgpack  struct{} `msgpack:",as_array"`
	MaxSize   uint64
	SharedUID bool // as StoreJob.SharedUID
}

func (ParseDrv) Kind() Kind { return KindParseDrv }
func (m ParseDrv) Validate() error {
	if m.MaxSize == 0 || m.MaxSize > MaxDrvSize {
		return fmt.Errorf("max size %d not in 1..%d", m.MaxSize, MaxDrvSize)
	}
	return nil
}

// DrvOutput is one output of a parsed derivation, its fields as written.
type DrvOutput struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Path     string
	HashAlgo string
	Hash     string
}

// DrvOutputList is a list of at most MaxDrvOutputs outputs.
type DrvOutputList []DrvOutput

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *DrvOutputList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxDrvOutputs, (*[]DrvOutput)(s))
}

// DrvInput is one input derivation and the outputs used from it.
type DrvInput struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     string
	Outputs  DrvStrings
}

// DrvInputList is a list of at most MaxDrvItems input derivations.
type DrvInputList []DrvInput

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *DrvInputList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxDrvItems, (*[]DrvInput)(s))
}

// DrvStrings is a list of at most MaxDrvItems strings.
type DrvStrings []string

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *DrvStrings) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxDrvItems, (*[]string)(s))
}

// DrvEnvList is a list of at most MaxDrvItems environment entries. An entry
// with the same key as the one before it continues that entry's value (a
// value longer than MaxDrvString is split).
type DrvEnvList []KV

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *DrvEnvList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxDrvItems, (*[]KV)(s))
}

// Drv is (a part of) a parsed derivation. The lists of every part are
// appended; Platform and Builder are those of the first part. The monitor
// trusts none of it: it prints the assembled derivation and compares it with
// the file.
type Drv struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Outputs   DrvOutputList
	InputDrvs DrvInputList
	InputSrcs DrvStrings
	Platform  string
	Builder   string
	Args      DrvStrings
	Env       DrvEnvList
	More      bool
}

func (Drv) Kind() Kind { return KindDrv }
func (m Drv) Validate() error {
	str := func(s string) error {
		if len(s) > MaxDrvString || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("string of %d bytes or with NUL", len(s))
		}
		return nil
	}
	strs := func(l []string) error {
		if len(l) > MaxDrvItems {
			return fmt.Errorf("%d items, at most %d", len(l), MaxDrvItems)
		}
		for i, s := range l {
			if err := str(s); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	}
	if len(m.Outputs) > MaxDrvOutputs || len(m.InputDrvs) > MaxDrvItems || len(m.Env) > MaxDrvItems {
		return fmt.Errorf("list too long")
	}
	for i, o := range m.Outputs {
		if err := strs([]string{o.Name, o.Path, o.HashAlgo, o.Hash}); err != nil {
			return field("Outputs", fmt.Errorf("[%d]%w", i, err))
		}
	}
	for i, in := range m.InputDrvs {
		if err := firstErr(str(in.Path), strs(in.Outputs)); err != nil {
			return field("InputDrvs", fmt.Errorf("[%d]: %w", i, err))
		}
	}
	for i, kv := range m.Env {
		if err := firstErr(str(kv.Key), str(kv.Value)); err != nil {
			return field("Env", fmt.Errorf("[%d]: %w", i, err))
		}
	}
	return firstErr(field("InputSrcs", strs(m.InputSrcs)), field("Platform", str(m.Platform)),
		field("Builder", str(m.Builder)), field("Args", strs(m.Args)))
}

// QueryDrvOutputs asks for the outputs of the valid derivation Path, as
// QueryDerivationOutputMap: answered with DrvOutputs.
type QueryDrvOutputs struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
}

func (QueryDrvOutputs) Kind() Kind        { return KindQueryDrvOutputs }
func (m QueryDrvOutputs) Validate() error { return field("Path", m.Path.Validate()) }

// DrvOutputs answers QueryDrvOutputs: Names[i] is built at Paths[i].
type DrvOutputs struct {
	_msgpack struct{} `msgpack:",as_array"`
	Names    Strings
	Paths    StorePaths
}

func (DrvOutputs) Kind() Kind { return KindDrvOutputs }
func (m DrvOutputs) Validate() error {
	if len(m.Names) != len(m.Paths) || len(m.Names) > MaxDrvOutputs {
		return fmt.Errorf("%d names, %d paths", len(m.Names), len(m.Paths))
	}
	return firstErr(field("Names", m.Names.Validate(MaxDrvOutputs, ValidName)), field("Paths", m.Paths.Validate()))
}

// BuildTarget is one DerivedPath: a path (Built false), or outputs of a
// derivation (Built; no Outputs = all of them).
type BuildTarget struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
	Built    bool
	Outputs  Strings
}

// BuildTargets is a list of at most MaxStrings targets.
type BuildTargets []BuildTarget

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *BuildTargets) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxStrings, (*[]BuildTarget)(s))
}

// Build modes (Build.Mode), as Nix's BuildMode.
const (
	BuildModeNormal uint64 = 0
	BuildModeRepair uint64 = 1
	BuildModeCheck  uint64 = 2
)

// Build realises Targets. The monitor answers with BuildEvent messages while
// it builds, then BuildResults (one per target, in order).
type Build struct {
	_msgpack struct{} `msgpack:",as_array"`
	Targets  BuildTargets
	Mode     uint64
}

func (Build) Kind() Kind { return KindBuild }
func (m Build) Validate() error {
	if m.Mode > BuildModeCheck {
		return fmt.Errorf("mode %d out of range", m.Mode)
	}
	if len(m.Targets) == 0 || len(m.Targets) > MaxStrings {
		return fmt.Errorf("%d targets", len(m.Targets))
	}
	for i, t := range m.Targets {
		if err := t.Path.Validate(); err != nil {
			return field("Targets", fmt.Errorf("[%d]: %w", i, err))
		}
		if !t.Built && len(t.Outputs) != 0 {
			return field("Targets", fmt.Errorf("[%d]: outputs of an opaque path", i))
		}
		if err := t.Outputs.Validate(MaxDrvOutputs, func(s string) error {
			if s == "*" {
				return nil
			}
			return ValidName(s)
		}); err != nil {
			return field("Targets", fmt.Errorf("[%d]: %w", i, err))
		}
	}
	return nil
}

// Build event types (BuildEvent.Type).
const (
	EventStart uint64 = 1 // a build of Drv starts (a Build activity); Text is "building '<drv>'"
	EventLine  uint64 = 2 // a line of Drv's build log
	EventStop  uint64 = 3 // the build of Drv ended
	EventError uint64 = 4 // an error shown to the client without ending the request (a failed dependency)
	// EventWaiting: the build of Drv waits for another request's build of
	// the same outputs (a BuildWaiting activity, Text "waiting for lock on …",
	// until Drv's EventStart or the end of the request)
	EventWaiting    uint64 = 5
	EventInfo       uint64 = 6 // a line shown to the client at level info (e.g. "checking path '…'")
	EventWarn       uint64 = 7 // a warning shown to the client (a substituter that failed or is not trusted)
	EventPlainError uint64 = 8 // a line shown at level error as it is (Nix's printError: no "error:" prefix)
	// EventSubstStart: the download of the path Drv from the cache whose
	// URL is Text starts (Nix's Substitute and CopyPath activities, until
	// Drv's EventSubstStop or the end of the request)
	EventSubstStart uint64 = 9
	EventSubstStop  uint64 = 10 // the download of the path Drv ended
)

// BuildEvent reports progress while a Build runs.
type BuildEvent struct {
	_msgpack struct{} `msgpack:",as_array"`
	Type     uint64
	Drv      StorePath
	Text     string
}

func (BuildEvent) Kind() Kind { return KindBuildEvent }
func (m BuildEvent) Validate() error {
	if m.Type < EventStart || m.Type > EventSubstStop {
		return fmt.Errorf("type %d out of range", m.Type)
	}
	return firstErr(field("Drv", m.Drv.Validate()), field("Text", MaxLen(m.Text, MaxText)))
}

// BuildResult is the result of one target, as Nix's BuildResult.
type BuildResult struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Status      uint64
	ErrorMsg    string
	TimesBuilt  uint64
	StartTime   int64
	StopTime    int64
	OutputNames Strings
	OutputPaths StorePaths
	// HashModulo is the base16 SHA-256 that names the outputs' realisations
	// ("sha256:<HashModulo>!<output>"), when outputs are given.
	HashModulo string
}

// BuildResultList is a list of at most MaxStrings results.
type BuildResultList []BuildResult

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *BuildResultList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxStrings, (*[]BuildResult)(s))
}

// BuildResults answers Build.
type BuildResults struct {
	_msgpack struct{} `msgpack:",as_array"`
	Results  BuildResultList
}

func (BuildResults) Kind() Kind { return KindBuildResults }
func (m BuildResults) Validate() error {
	if len(m.Results) > MaxStrings {
		return fmt.Errorf("%d results", len(m.Results))
	}
	for i, r := range m.Results {
		if r.Status > 255 || len(r.OutputNames) != len(r.OutputPaths) {
			return field("Results", fmt.Errorf("[%d]: status %d, %d names, %d paths", i, r.Status, len(r.OutputNames), len(r.OutputPaths)))
		}
		if len(r.HashModulo) != 0 && len(r.HashModulo) != 64 || strings.Trim(r.HashModulo, "0123456789abcdef") != "" {
			return field("Results", fmt.Errorf("[%d]: hash modulo %q", i, r.HashModulo))
		}
		if err := firstErr(MaxLen(r.ErrorMsg, MaxText), r.OutputNames.Validate(MaxDrvOutputs, ValidName), r.OutputPaths.Validate()); err != nil {
			return field("Results", fmt.Errorf("[%d]: %w", i, err))
		}
	}
	return nil
}

// QueryMissing asks what realising Targets would take (Nix's queryMissing,
// without substituters): answered with Missing.
type QueryMissing struct {
	_msgpack struct{} `msgpack:",as_array"`
	Targets  BuildTargets
}

func (QueryMissing) Kind() Kind { return KindQueryMissing }
func (m QueryMissing) Validate() error {
	return Build{Targets: m.Targets}.Validate()
}

// Missing answers QueryMissing: the derivations that would be built and the
// paths nothing can produce.
type Missing struct {
	_msgpack  struct{} `msgpack:",as_array"`
	WillBuild StorePaths
	Unknown   StorePaths
	// Substitution (monitor/substitute.go): what would be downloaded, with
	// the total compressed and NAR sizes from the narinfos.
	WillSubstitute StorePaths
	DownloadSize   uint64
	NarSize        uint64
}

func (Missing) Kind() Kind { return KindMissing }
func (m Missing) Validate() error {
	return firstErr(field("WillBuild", m.WillBuild.Validate()), field("Unknown", m.Unknown.Validate()),
		field("WillSubstitute", m.WillSubstitute.Validate()))
}

var drvTable = []Spec{
	row[ParseDrv](1),
	row[Drv](0),
	row[QueryDrvOutputs](0),
	row[DrvOutputs](0),
	row[Build](0),
	row[BuildEvent](0),
	row[BuildResults](0),
	row[QueryMissing](0),
	row[Missing](0),
}
