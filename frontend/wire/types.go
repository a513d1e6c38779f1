package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// UnkeyedValidPathInfo is a store path's metadata without the path (§4.1).
type UnkeyedValidPathInfo struct {
	Deriver          string   // full .drv path, "" if unknown
	NarHash          string   // as sent; writers send bare base16
	References       []string // full store paths
	RegistrationTime uint64
	NarSize          uint64
	Ultimate         bool     // ≥1.16
	Sigs             []string // ≥1.16
	CA               string   // ≥1.16, "" = not content-addressed
}

// ValidPathInfo is the keyed form: the path, then its metadata.
type ValidPathInfo struct {
	Path string
	UnkeyedValidPathInfo
}

// ReadUnkeyedValidPathInfo reads the unkeyed form in the layout of version v.
func ReadUnkeyedValidPathInfo(r *Reader, v Version) (UnkeyedValidPathInfo, error) {
	var i UnkeyedValidPathInfo
	var err error
	if i.Deriver, err = r.String(MaxPathLen, "deriver"); err != nil {
		return i, err
	}
	if i.NarHash, err = r.String(MaxSmallString, "narHash"); err != nil {
		return i, err
	}
	if i.References, err = r.StringSet(MaxCount, MaxPathLen, "references"); err != nil {
		return i, err
	}
	if i.RegistrationTime, err = r.U64(); err != nil {
		return i, err
	}
	if i.NarSize, err = r.U64(); err != nil {
		return i, err
	}
	if !v.AtLeast(16) {
		return i, nil
	}
	if i.Ultimate, err = r.Bool(); err != nil {
		return i, err
	}
	if i.Sigs, err = r.StringSet(MaxCount, MaxSmallString, "signatures"); err != nil {
		return i, err
	}
	i.CA, err = r.String(MaxSmallString, "content address")
	return i, err
}

// ReadValidPathInfo reads the keyed form in the layout of version v.
func ReadValidPathInfo(r *Reader, v Version) (ValidPathInfo, error) {
	p, err := r.String(MaxPathLen, "path")
	if err != nil {
		return ValidPathInfo{}, err
	}
	u, err := ReadUnkeyedValidPathInfo(r, v)
	return ValidPathInfo{Path: p, UnkeyedValidPathInfo: u}, err
}

// WriteUnkeyedValidPathInfo writes the unkeyed form in the layout of version v.
func WriteUnkeyedValidPathInfo(w *Writer, v Version, i UnkeyedValidPathInfo) {
	w.String(i.Deriver)
	w.String(i.NarHash)
	w.StringSet(i.References)
	w.U64(i.RegistrationTime)
	w.U64(i.NarSize)
	if v.AtLeast(16) {
		w.Bool(i.Ultimate)
		w.StringSet(i.Sigs)
		w.String(i.CA)
	}
}

// WriteValidPathInfo writes the keyed form in the layout of version v.
func WriteValidPathInfo(w *Writer, v Version, i ValidPathInfo) {
	w.String(i.Path)
	WriteUnkeyedValidPathInfo(w, v, i.UnkeyedValidPathInfo)
}

// ContentAddress is a parsed content-address string "<method>:<algo>:<hash>" (§4.1).
type ContentAddress struct {
	Method string // "text", "flat", "nar" (or "git", which privnix does not support)
	Algo   string // md5, sha1, sha256, sha512
	Hash   string // the hash as written (nixbase32 from Nix)
}

var hashAlgos = []string{"md5", "sha1", "sha256", "sha512"}

// ParseContentAddressMethod parses an AddToStore method string: "text:sha256", "fixed:<algo>", "fixed:r:<algo>".
func ParseContentAddressMethod(s string) (method, algo string, err error) {
	switch {
	case strings.HasPrefix(s, "text:"):
		method, algo = "text", s[len("text:"):]
	case strings.HasPrefix(s, "fixed:r:"):
		method, algo = "nar", s[len("fixed:r:"):]
	case strings.HasPrefix(s, "fixed:git:"):
		return "", "", fmt.Errorf("content-address method %q (git hashing) is not supported", s)
	case strings.HasPrefix(s, "fixed:"):
		method, algo = "flat", s[len("fixed:"):]
	default:
		return "", "", fmt.Errorf("content-address method %q is neither text nor fixed", s)
	}
	if !slices.Contains(hashAlgos, algo) {
		return "", "", fmt.Errorf("content-address method %q: unknown hash algorithm %q", s, algo)
	}
	if method == "text" && algo != "sha256" {
		return "", "", fmt.Errorf("content-address method %q: text hashing needs sha256", s)
	}
	return method, algo, nil
}

// ParseContentAddress splits a content address; "" is not one.
func ParseContentAddress(s string) (ContentAddress, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return ContentAddress{}, fmt.Errorf("content address %q has no hash", s)
	}
	m, a, err := ParseContentAddressMethod(s[:i])
	if err != nil {
		return ContentAddress{}, err
	}
	if s[i+1:] == "" {
		return ContentAddress{}, fmt.Errorf("content address %q has an empty hash", s)
	}
	return ContentAddress{Method: m, Algo: a, Hash: s[i+1:]}, nil
}

// MethodString returns the method as AddToStore sends it.
func (c ContentAddress) MethodString() string {
	switch c.Method {
	case "text":
		return "text:" + c.Algo
	case "nar":
		return "fixed:r:" + c.Algo
	}
	return "fixed:" + c.Algo
}

func (c ContentAddress) String() string { return c.MethodString() + ":" + c.Hash }

// DerivedPath is a build request (§4.1): an opaque path, or outputs of a derivation.
type DerivedPath struct {
	Path    string   // the store path or the .drv path
	Built   bool     // outputs of Path are requested
	Outputs []string // output names; nil with Built = all outputs
}

// ParseDerivedPath parses the string form of version v. Below 1.30 a bare .drv path means all its outputs.
func ParseDerivedPath(s string, v Version) (DerivedPath, error) {
	p, outs, found := strings.Cut(s, "!")
	if !found {
		built := !v.AtLeast(30) && strings.HasSuffix(p, ".drv")
		return DerivedPath{Path: p, Built: built}, nil
	}
	if strings.Contains(outs, "!") {
		return DerivedPath{}, fmt.Errorf("derived path %q: nested derivations are not supported", s)
	}
	d := DerivedPath{Path: p, Built: true}
	if outs == "*" && v.AtLeast(30) {
		return d, nil
	}
	if outs == "" {
		if v.AtLeast(30) {
			return DerivedPath{}, fmt.Errorf("derived path %q has an empty output list", s)
		}
		return d, nil
	}
	for o := range strings.SplitSeq(outs, ",") {
		if o == "" || o == "*" {
			return DerivedPath{}, fmt.Errorf("derived path %q has an invalid output name %q", s, o)
		}
		d.Outputs = append(d.Outputs, o)
	}
	slices.Sort(d.Outputs)
	d.Outputs = slices.Compact(d.Outputs)
	return d, nil
}

// Format returns the string form of version v.
func (d DerivedPath) Format(v Version) string {
	if !d.Built {
		return d.Path
	}
	if len(d.Outputs) == 0 {
		if v.AtLeast(30) {
			return d.Path + "!*"
		}
		if strings.HasSuffix(d.Path, ".drv") {
			return d.Path
		}
		return d.Path + "!"
	}
	o := slices.Clone(d.Outputs)
	slices.Sort(o)
	return d.Path + "!" + strings.Join(o, ",")
}

// BuildMode values (§4.1).
const (
	BuildNormal uint64 = 0
	BuildRepair uint64 = 1
	BuildCheck  uint64 = 2
)

// ReadBuildMode reads a BuildMode and refuses unknown values.
func ReadBuildMode(r *Reader) (uint64, error) { return r.Uint(BuildCheck, "build mode") }

// Trusted flag values of the ≥1.35 handshake.
const (
	TrustUnknown uint64 = 0
	Trusted      uint64 = 1
	NotTrusted   uint64 = 2
)

// Realisation is the 2.8 JSON form of a CA derivation output's realisation.
type Realisation struct {
	DependentRealisations map[string]string `json:"dependentRealisations"`
	ID                    string            `json:"id"`
	OutPath               string            `json:"outPath"` // base name
	Signatures            []string          `json:"signatures"`
}

// JSON returns the compact JSON Nix 2.8 sends (keys sorted, no HTML escaping).
func (r Realisation) JSON() string {
	if r.DependentRealisations == nil {
		r.DependentRealisations = map[string]string{}
	}
	if r.Signatures == nil {
		r.Signatures = []string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(r) // cannot fail for these types
	return strings.TrimSuffix(b.String(), "\n")
}

// ParseRealisation parses realisation JSON.
func ParseRealisation(s string) (Realisation, error) {
	var r Realisation
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return r, fmt.Errorf("realisation JSON: %w", err)
	}
	return r, nil
}

// OutputRealisation is a built output in the realisation-with-path-not-hash form.
type OutputRealisation struct {
	Path       string
	Signatures []string
}

// FeatureRealisationWithPathNotHash names the HEAD feature that changes BuildResult.builtOutputs.
const FeatureRealisationWithPathNotHash = "realisation-with-path-not-hash"

// BuildResult is one build's outcome (§4.1).
type BuildResult struct {
	Status             uint64
	ErrorMsg           string
	TimesBuilt         uint64 // ≥1.29
	IsNonDeterministic bool
	StartTime          uint64
	StopTime           uint64
	CPUUser            *uint64 // ≥1.37, microseconds; nil = unknown
	CPUSystem          *uint64
	// BuiltOutputs (≥1.28): drvOutputId → realisation JSON, sorted by key.
	BuiltOutputs []Pair
	// OutputPaths replaces BuiltOutputs with the realisation-with-path-not-hash feature.
	OutputPaths map[string]OutputRealisation
}

// ReadBuildResult reads a BuildResult in the layout of version v; pathNotHash selects the feature layout.
func ReadBuildResult(r *Reader, v Version, pathNotHash bool) (BuildResult, error) {
	var b BuildResult
	var err error
	if b.Status, err = r.Uint(255, "build status"); err != nil {
		return b, err
	}
	if b.ErrorMsg, err = r.String(MaxTextLen, "build error"); err != nil {
		return b, err
	}
	if v.AtLeast(29) {
		for _, p := range []*uint64{&b.TimesBuilt} {
			if *p, err = r.U64(); err != nil {
				return b, err
			}
		}
		if b.IsNonDeterministic, err = r.Bool(); err != nil {
			return b, err
		}
		if b.StartTime, err = r.U64(); err != nil {
			return b, err
		}
		if b.StopTime, err = r.U64(); err != nil {
			return b, err
		}
	}
	if v.AtLeast(37) {
		if b.CPUUser, err = readOptionalU64(r); err != nil {
			return b, err
		}
		if b.CPUSystem, err = readOptionalU64(r); err != nil {
			return b, err
		}
	}
	switch {
	case pathNotHash:
		b.OutputPaths, err = readOutputPaths(r)
	case v.AtLeast(28):
		b.BuiltOutputs, err = r.Pairs(MaxCount, MaxSmallString, MaxTextLen, "built outputs")
	}
	return b, err
}

func readOptionalU64(r *Reader) (*uint64, error) {
	tag, err := r.Uint(1, "optional tag")
	if err != nil || tag == 0 {
		return nil, err
	}
	v, err := r.U64()
	return &v, err
}

func readOutputPaths(r *Reader) (map[string]OutputRealisation, error) {
	n, err := r.count(MaxCount, "built outputs")
	if err != nil {
		return nil, err
	}
	m := make(map[string]OutputRealisation, min(n, 64))
	for range n {
		name, err := r.String(MaxSmallString, "output name")
		if err != nil {
			return nil, err
		}
		var o OutputRealisation
		if o.Path, err = r.String(MaxPathLen, "output path"); err != nil {
			return nil, err
		}
		if o.Signatures, err = r.StringSet(MaxCount, MaxSmallString, "signatures"); err != nil {
			return nil, err
		}
		m[name] = o
	}
	return m, nil
}

// WriteBuildResult writes b in the layout of version v; pathNotHash selects the feature layout.
func WriteBuildResult(w *Writer, v Version, pathNotHash bool, b BuildResult) {
	w.U64(b.Status)
	w.String(b.ErrorMsg)
	if v.AtLeast(29) {
		w.U64(b.TimesBuilt)
		w.Bool(b.IsNonDeterministic)
		w.U64(b.StartTime)
		w.U64(b.StopTime)
	}
	if v.AtLeast(37) {
		writeOptionalU64(w, b.CPUUser)
		writeOptionalU64(w, b.CPUSystem)
	}
	switch {
	case pathNotHash:
		names := make([]string, 0, len(b.OutputPaths))
		for n := range b.OutputPaths {
			names = append(names, n)
		}
		slices.Sort(names)
		w.U64(uint64(len(names)))
		for _, n := range names {
			w.String(n)
			w.String(b.OutputPaths[n].Path)
			w.StringSet(b.OutputPaths[n].Signatures)
		}
	case v.AtLeast(28):
		ps := slices.Clone(b.BuiltOutputs)
		slices.SortFunc(ps, func(a, b Pair) int { return strings.Compare(a.Key, b.Key) })
		w.Pairs(ps)
	}
}

func writeOptionalU64(w *Writer, p *uint64) {
	if p == nil {
		w.U64(0)
		return
	}
	w.U64(1)
	w.U64(*p)
}

// KeyedBuildResult is a BuildPathsWithResults reply element.
type KeyedBuildResult struct {
	Path DerivedPath
	BuildResult
}

// ReadKeyedBuildResult reads a DerivedPath string then a BuildResult.
func ReadKeyedBuildResult(r *Reader, v Version, pathNotHash bool) (KeyedBuildResult, error) {
	s, err := r.String(MaxPathLen+MaxSmallString, "derived path")
	if err != nil {
		return KeyedBuildResult{}, err
	}
	d, err := ParseDerivedPath(s, v)
	if err != nil {
		return KeyedBuildResult{}, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	b, err := ReadBuildResult(r, v, pathNotHash)
	return KeyedBuildResult{Path: d, BuildResult: b}, err
}

// WriteKeyedBuildResult writes a DerivedPath string then a BuildResult.
func WriteKeyedBuildResult(w *Writer, v Version, pathNotHash bool, k KeyedBuildResult) {
	w.String(k.Path.Format(v))
	WriteBuildResult(w, v, pathNotHash, k.BuildResult)
}

// ClientOptions is the body of SetOptions (op 19, §4.3).
type ClientOptions struct {
	KeepFailed      bool
	KeepGoing       bool
	TryFallback     bool
	Verbosity       uint64
	MaxBuildJobs    uint64
	MaxSilentTime   uint64
	UseBuildHook    bool   // obsolete
	VerboseBuild    uint64 // a verbosity level: 0 (lvlError) means verbose
	LogType         uint64 // obsolete
	PrintBuildTrace uint64 // obsolete
	BuildCores      uint64
	UseSubstitutes  bool
	Overrides       []Pair // ≥1.12: setting name → value, as sent
}

// MaxOverrides caps the overrides of one SetOptions.
const MaxOverrides = 4096

const maxUint32 = 1<<32 - 1

// ReadClientOptions reads a SetOptions body of version v.
func ReadClientOptions(r *Reader, v Version) (ClientOptions, error) {
	var o ClientOptions
	var err error
	bools := []*bool{&o.KeepFailed, &o.KeepGoing, &o.TryFallback}
	for _, p := range bools {
		if *p, err = r.Bool(); err != nil {
			return o, err
		}
	}
	if o.Verbosity, err = r.Uint(maxUint32, "verbosity"); err != nil {
		return o, err
	}
	for _, f := range []struct {
		p    *uint64
		name string
	}{{&o.MaxBuildJobs, "max-jobs"}, {&o.MaxSilentTime, "max-silent-time"}} {
		if *f.p, err = r.Uint(maxUint32, f.name); err != nil {
			return o, err
		}
	}
	if o.UseBuildHook, err = r.Bool(); err != nil {
		return o, err
	}
	if o.VerboseBuild, err = r.Uint(maxUint32, "verbose-build"); err != nil {
		return o, err
	}
	if o.LogType, err = r.U64(); err != nil {
		return o, err
	}
	if o.PrintBuildTrace, err = r.U64(); err != nil {
		return o, err
	}
	if o.BuildCores, err = r.Uint(maxUint32, "cores"); err != nil {
		return o, err
	}
	if o.UseSubstitutes, err = r.Bool(); err != nil {
		return o, err
	}
	if v.AtLeast(12) {
		o.Overrides, err = r.Pairs(MaxOverrides, MaxSmallString, MaxTextLen/64, "setting overrides")
	}
	return o, err
}

// WriteClientOptions writes a SetOptions body of version v (the client's side).
func WriteClientOptions(w *Writer, v Version, o ClientOptions) {
	w.Bool(o.KeepFailed)
	w.Bool(o.KeepGoing)
	w.Bool(o.TryFallback)
	w.U64(o.Verbosity)
	w.U64(o.MaxBuildJobs)
	w.U64(o.MaxSilentTime)
	w.Bool(o.UseBuildHook)
	w.U64(o.VerboseBuild)
	w.U64(o.LogType)
	w.U64(o.PrintBuildTrace)
	w.U64(o.BuildCores)
	w.Bool(o.UseSubstitutes)
	if v.AtLeast(12) {
		w.Pairs(o.Overrides)
	}
}

// BuildStatusNames maps BuildResult status values to Nix's names.
var BuildStatusNames = []string{
	"Built", "Substituted", "AlreadyValid", "PermanentFailure", "InputRejected",
	"OutputRejected", "TransientFailure", "CachedFailure", "TimedOut", "MiscFailure",
	"DependencyFailed", "LogLimitExceeded", "NotDeterministic", "ResolvesToAlreadyValid", "NoSubstituters",
}

// Succeeded reports whether the status is a success (Built, Substituted, AlreadyValid, ResolvesToAlreadyValid).
func (b BuildResult) Succeeded() bool {
	return b.Status <= 2 || b.Status == 13
}

// WriteHandshakeInfo writes what the daemon sends after reserveSpace: ≥1.33 its Nix version, ≥1.35 the trust flag.
func WriteHandshakeInfo(w *Writer, v Version, nixVersion string, trust uint64) {
	if v.AtLeast(33) {
		w.String(nixVersion)
	}
	if v.AtLeast(35) {
		w.U64(trust)
	}
}

// ReadHandshakeInfo reads what WriteHandshakeInfo writes (the client's side).
func ReadHandshakeInfo(r *Reader, v Version) (nixVersion string, trust uint64, err error) {
	if v.AtLeast(33) {
		if nixVersion, err = r.String(MaxSmallString, "daemon Nix version"); err != nil {
			return "", 0, err
		}
	}
	if v.AtLeast(35) {
		trust, err = r.Uint(NotTrusted, "trusted flag")
	}
	return nixVersion, trust, err
}
