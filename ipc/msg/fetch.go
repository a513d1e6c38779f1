//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Substitution: the fetcher channel. The fetcher (cmd/privnix-fetch, a fresh
// unprivileged uid, network but no writable filesystem) talks to binary
// caches; the monitor asks, the fetcher answers. It parses nix-cache-info and
// narinfo text and hands the monitor only the structured fields, which the
// monitor checks (signature over its own fingerprint) before anything is
// downloaded. A NAR goes from the fetcher, decompressed, down a pipe to a
// network-less storeproc that unpacks it; the monitor never reads it.
//
//	monitor                                        fetcher (fresh uid)
//	 spawn ──────────────────────────────────────▶ (exec)
//	 ◀──────────────────────────────────────────── Hello
//	 ── FetchJob{Caches, ConnectTimeout} ────────▶ confines itself, reads each nix-cache-info
//	 ◀──────────────────────────────── CacheInfos{one per cache}
//	 ── GetNarInfo{Cache, HashPart} ─────────────▶
//	 ◀──────────────────────────────── NarInfo{Found, fields} | Error
//	 ── GetNar{Cache, URL, Compression, sizes} + [pipe write end] ─▶ downloads, decompresses, writes the NAR
//	 ◀──────────────────────────────── NarSent{FileBytes, NarBytes} | Error
//
// An Error from the fetcher (ClassPolicy) says what the cache did wrong; the
// monitor shows it to the user as a warning and tries the next cache.
const (
	KindFetchJob   Kind = 0x0601 // the monitor's answer to the fetcher's Hello
	KindCacheInfos Kind = 0x0603 // the fetcher's answer to FetchJob
	KindGetNarInfo Kind = 0x0604 // answered with NarInfo or Error
	KindNarInfo    Kind = 0x0605
	KindGetNar     Kind = 0x0606 // 1 fd; answered with NarSent or Error
	KindNarSent    Kind = 0x0607
)

// Fetcher limits.
const (
	MaxCaches   = 32   // substituters one fetcher serves
	MaxCacheURL = 1024 // bytes of a substituter URL
	MaxNarURL   = 1024 // bytes of a narinfo URL field
	MaxNarRefs  = 8192 // references of one narinfo (= MaxPaths)
	// MaxFileSize bounds a compressed NAR download (= MaxUpload).
	MaxFileSize = MaxUpload
)

// Compressions a fetcher can undo (narinfo's Compression field).
var Compressions = []string{"none", "xz", "zstd", "bzip2"}

// ValidCacheURL checks the shape of a substituter URL: file://, http:// or
// https://, printable, bounded. The fetcher parses it properly.
func ValidCacheURL(s string) error {
	if err := Printable(s, MaxCacheURL); err != nil {
		return err
	}
	for _, scheme := range []string{"file://", "http://", "https://"} {
		if strings.HasPrefix(s, scheme) && len(s) > len(scheme) {
			return nil
		}
	}
	return fmt.Errorf("substituter %q is not a file://, http:// or https:// URL", s)
}

// ValidNarURL checks a narinfo URL: relative to the cache, no "..", no
// scheme, no query or fragment, no backslash, printable.
func ValidNarURL(s string) error {
	if s == "" || len(s) > MaxNarURL {
		return fmt.Errorf("NAR URL of %d bytes", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\\?#:%", c) >= 0 {
			return fmt.Errorf("NAR URL %q contains %q", s, c)
		}
	}
	if s[0] == '/' {
		return fmt.Errorf("NAR URL %q is absolute", s)
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("NAR URL %q has a %q segment", s, seg)
		}
	}
	return nil
}

func validCompression(s string) error {
	for _, c := range Compressions {
		if s == c {
			return nil
		}
	}
	return fmt.Errorf("compression %q is not one of %v", s, Compressions)
}

// FetchJob answers the fetcher's Hello: the caches it serves, in the
// monitor's order (GetNarInfo and GetNar name them by index), and the
// connect timeout in seconds (0: the fetcher's default).
type FetchJob struct {
	_msgpack       struct{} `msgpack:",as_array"`
	Caches         Strings
	StoreDir       string // a cache whose nix-cache-info names another is refused
	ConnectTimeout uint64
	SharedUID      bool // the monitor is not root: confine with inherited credentials
}

func (FetchJob) Kind() Kind { return KindFetchJob }
func (m FetchJob) Validate() error {
	if m.ConnectTimeout > 3600 {
		return fmt.Errorf("connect timeout %d s, at most 3600", m.ConnectTimeout)
	}
	return firstErr(field("Caches", m.Caches.Validate(MaxCaches, ValidCacheURL)), field("StoreDir", ValidStoreDir(m.StoreDir)))
}

// CacheInfo is one cache's nix-cache-info. Err (a text for the user) is set
// when the cache could not be used; the other fields are then zero.
type CacheInfo struct {
	_msgpack      struct{} `msgpack:",as_array"`
	Err           string
	StoreDir      string
	WantMassQuery bool
	Priority      uint64
}

// Validate bounds every field.
func (c CacheInfo) Validate() error {
	if c.Err != "" {
		return field("Err", Printable(c.Err, MaxText))
	}
	if c.Priority > 1<<31 {
		return fmt.Errorf("priority %d", c.Priority)
	}
	return field("StoreDir", ValidStoreDir(c.StoreDir))
}

// CacheInfoList is a bounded list of CacheInfo.
type CacheInfoList []CacheInfo

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *CacheInfoList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxCaches, (*[]CacheInfo)(l))
}

// CacheInfos answers FetchJob: one CacheInfo per cache, in FetchJob's order.
type CacheInfos struct {
	_msgpack struct{} `msgpack:",as_array"`
	Infos    CacheInfoList
}

func (CacheInfos) Kind() Kind { return KindCacheInfos }
func (m CacheInfos) Validate() error {
	if len(m.Infos) > MaxCaches {
		return fmt.Errorf("%d caches, at most %d", len(m.Infos), MaxCaches)
	}
	for i, c := range m.Infos {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("infos[%d]: %w", i, err)
		}
	}
	return nil
}

// GetNarInfo asks cache number Cache for <HashPart>.narinfo.
type GetNarInfo struct {
	_msgpack struct{} `msgpack:",as_array"`
	Cache    uint64
	HashPart string
}

func (GetNarInfo) Kind() Kind { return KindGetNarInfo }
func (m GetNarInfo) Validate() error {
	if m.Cache >= MaxCaches {
		return fmt.Errorf("cache %d out of range", m.Cache)
	}
	return field("HashPart", ValidHashPart(m.HashPart))
}

// NarInfo answers GetNarInfo: Found false (the cache has no such narinfo:
// 404, or no file) with every other field zero, or the parsed narinfo.
// Hashes are "sha256:<nix32>"; References are full store paths. The monitor
// checks StorePath against what it asked for and the signature against its
// own fingerprint.
type NarInfo struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Found       bool
	StorePath   StorePath
	URL         string
	Compression string
	FileHash    string // "" when the narinfo has none
	FileSize    uint64 // 0 when unknown
	NarHash     string
	NarSize     uint64
	References  StorePaths
	Deriver     StorePath // "" = none
	Sigs        Strings
	CA          string
}

func (NarInfo) Kind() Kind { return KindNarInfo }
func (m NarInfo) Validate() error {
	if !m.Found {
		if m.StorePath != "" || m.URL != "" || m.NarHash != "" || len(m.References) > 0 || len(m.Sigs) > 0 {
			return fmt.Errorf("a narinfo that was not found has fields")
		}
		return nil
	}
	if m.FileSize > MaxFileSize || m.NarSize == 0 || m.NarSize > MaxUpload {
		return fmt.Errorf("sizes %d/%d out of range", m.FileSize, m.NarSize)
	}
	errs := []error{
		field("StorePath", m.StorePath.Validate()),
		field("URL", ValidNarURL(m.URL)),
		field("Compression", validCompression(m.Compression)),
		field("NarHash", ValidHash(m.NarHash, "sha256")),
		field("References", m.References.Validate()),
		field("Deriver", validOptPath(m.Deriver)),
		field("Sigs", m.Sigs.Validate(MaxSigs, ValidSig)),
	}
	if m.FileHash != "" {
		errs = append(errs, field("FileHash", ValidHash(m.FileHash, "")))
	}
	if m.CA != "" {
		errs = append(errs, field("CA", ValidCA(m.CA)))
	}
	return firstErr(errs...)
}

// GetNar asks the fetcher to download URL (relative to cache number Cache),
// undo Compression and write the plain NAR to the pipe it comes with, then
// close it. FileSize (if not 0) and NarSize bound what it reads and writes:
// more is refused, and so is a NAR shorter than NarSize.
type GetNar struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Cache       uint64
	URL         string
	Compression string
	FileSize    uint64
	NarSize     uint64
}

func (GetNar) Kind() Kind { return KindGetNar }
func (m GetNar) Validate() error {
	if m.Cache >= MaxCaches {
		return fmt.Errorf("cache %d out of range", m.Cache)
	}
	if m.FileSize > MaxFileSize || m.NarSize == 0 || m.NarSize > MaxUpload {
		return fmt.Errorf("sizes %d/%d out of range", m.FileSize, m.NarSize)
	}
	return firstErr(field("URL", ValidNarURL(m.URL)), field("Compression", validCompression(m.Compression)))
}

// NarSent answers GetNar: the whole NAR went down the pipe. FileBytes were
// downloaded, NarBytes written.
type NarSent struct {
	_msgpack  struct{} `msgpack:",as_array"`
	FileBytes uint64
	NarBytes  uint64
}

func (NarSent) Kind() Kind { return KindNarSent }
func (m NarSent) Validate() error {
	if m.FileBytes > MaxFileSize || m.NarBytes > MaxUpload {
		return fmt.Errorf("sizes %d/%d out of range", m.FileBytes, m.NarBytes)
	}
	return nil
}

var fetchTable = []Spec{
	row[FetchJob](0),
	row[CacheInfos](0),
	row[GetNarInfo](0),
	row[NarInfo](0),
	row[GetNar](1),
	row[NarSent](0),
}

// Substitutable paths, on the frontend channel (QuerySubstitutablePaths,
// QuerySubstitutablePathInfos and the older singular ops):
//
//	frontend                                         monitor
//	 ── QuerySubstitutable{Paths, Infos} ─────────▶  narinfos (its cache, else the fetcher)
//	 ◀──────────── Substitutable{Infos, More} ...   (More: another frame follows)
const (
	KindQuerySubstitutable Kind = 0x02a0 // answered with Substitutable frames or Error
	KindSubstitutable      Kind = 0x02a1
)

// MaxSubstInfos bounds the infos of one Substitutable frame.
const MaxSubstInfos = 512

// QuerySubstitutable asks which of Paths a substituter of the connection
// has; with Infos, also what each would download.
type QuerySubstitutable struct {
	_msgpack struct{} `msgpack:",as_array"`
	Paths    StorePaths
	Infos    bool
}

func (QuerySubstitutable) Kind() Kind { return KindQuerySubstitutable }
func (m QuerySubstitutable) Validate() error {
	if len(m.Paths) > MaxStrings {
		return fmt.Errorf("%d paths, at most %d", len(m.Paths), MaxStrings)
	}
	return field("Paths", m.Paths.Validate())
}

// SubstInfo is one substitutable path: Deriver, References (full paths)
// and the sizes only when Infos was asked for.
type SubstInfo struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Path         StorePath
	Deriver      StorePath
	References   StorePaths
	DownloadSize uint64
	NarSize      uint64
}

// Validate checks the paths.
func (s SubstInfo) Validate() error {
	return firstErr(field("Path", s.Path.Validate()), field("Deriver", validOptPath(s.Deriver)), field("References", s.References.Validate()))
}

// SubstInfoList is a bounded list of SubstInfo.
type SubstInfoList []SubstInfo

// DecodeMsgpack implements msgpack.CustomDecoder.
func (l *SubstInfoList) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxSubstInfos, (*[]SubstInfo)(l))
}

// Substitutable answers QuerySubstitutable, in frames: More says another
// follows.
type Substitutable struct {
	_msgpack struct{} `msgpack:",as_array"`
	Infos    SubstInfoList
	More     bool
}

func (Substitutable) Kind() Kind { return KindSubstitutable }
func (m Substitutable) Validate() error {
	if len(m.Infos) > MaxSubstInfos {
		return fmt.Errorf("%d infos, at most %d", len(m.Infos), MaxSubstInfos)
	}
	for i, s := range m.Infos {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("infos[%d]: %w", i, err)
		}
	}
	return nil
}

var substTable = []Spec{
	row[QuerySubstitutable](0),
	row[Substitutable](0),
}
