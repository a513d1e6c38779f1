//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection
package msg

import (
	"fmt"
	"path/filepath"
	"strings"
)

// More frontend requests: signatures and GC roots.
//
//	frontend                                   monitor
//	  │ ── AddSignatures{Path, Sigs} ──────────▶ │  trusted users only
//	  │ ◀──────────────────────────── OK|Error ─ │
//	  │ ── AddIndirectRoot{Link} ──────────────▶ │  gcroots/auto/<hash> → Link
//	  │ ◀──────────────────────────── OK|Error ─ │
//	  │ ── SyncWithGC{} ───────────────────────▶ │  waits for a running collection
//	  │ ◀───────────────────────────────── OK ── │
const (
	KindAddSignatures   Kind = 0x0230 // answered with OK or Error
	KindAddIndirectRoot Kind = 0x0232 // answered with OK or Error
	KindSyncWithGC      Kind = 0x0234 // answered with OK
)

// MaxLinkPath bounds the path of an indirect root's symlink.
const MaxLinkPath = 4096

// AddSignatures adds signatures to a valid path.
type AddSignatures struct {
	_msgpack struct{} `msgpack:",as_array"`
	Path     StorePath
	Sigs     Strings
}

func (AddSignatures) Kind() Kind { return KindAddSignatures }
func (m AddSignatures) Validate() error {
	return firstErr(field("Path", m.Path.Validate()), field("Sigs", m.Sigs.Validate(MaxSigs, ValidSig)))
}

// AddIndirectRoot registers Link (a symlink somewhere in the file system,
// such as nix-build's result) as an indirect GC root.
type AddIndirectRoot struct {
	_msgpack struct{} `msgpack:",as_array"`
	Link     string
}

func (AddIndirectRoot) Kind() Kind { return KindAddIndirectRoot }
func (m AddIndirectRoot) Validate() error {
	switch {
	case len(m.Link) == 0 || len(m.Link) > MaxLinkPath:
		return fmt.Errorf("link: length %d", len(m.Link))
	case !filepath.IsAbs(m.Link) || filepath.Clean(m.Link) != m.Link:
		return fmt.Errorf("link: %q is not an absolute, clean path", m.Link)
	case strings.IndexByte(m.Link, 0) >= 0:
		return fmt.Errorf("link: contains NUL")
	}
	return nil
}

// SyncWithGC waits until no garbage collection is running.
type SyncWithGC struct {
	_msgpack struct{} `msgpack:",as_array"`
}

func (SyncWithGC) Kind() Kind      { return KindSyncWithGC }
func (SyncWithGC) Validate() error { return nil }

var rootsTable = []Spec{
	row[AddSignatures](0),
	row[AddIndirectRoot](0),
	row[SyncWithGC](0),
}
