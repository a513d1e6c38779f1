package storedb

// Schema, version 1. Every key is ASCII; <base> is a store path's base name
// ("<32 nix32 chars>-<name>"), which never contains '/', so '/' separates fields.
//
//	meta/schema               → "1"                    (schemaVersion)
//	meta/instance             → 32 hex chars            random, written once at creation
//	v/<base>                  → encoded PathInfo        the path is valid
//	r/<reference>/<referrer>  → empty                   referrer index: <referrer> is valid and refers to <reference>
//	d/<drv>/<output>          → <out base>              derivation outputs of a valid <drv>
//	o/<out>/<drv>             → empty                   valid derivers: d/<drv>/<output> = <out>
//	p/<base>                  → empty                   pending: staged, maybe renamed into the store, not valid
//
// Invariants every committed transaction keeps (Check verifies them):
//   - for every v/P and every reference R of P: v/R exists and r/R/P exists;
//   - every r/R/P has v/P listing R among its references;
//   - every d/D/O has v/D and a matching o/<out>/D, and every o/X/D a matching d/D/O;
//   - RegisterValid deletes p/P in the transaction that writes v/P, so after a
//     crash a pending path that is not valid is exactly one whose tree may have
//     been renamed into the store but never registered.
//
// The hash-part index is the key order itself: ByHashPart seeks to "v/<hash part>-".
//
// PathInfo value encoding (encodeInfo/decodeInfo), all integers unsigned varints
// unless noted, every string length-prefixed (uvarint) and bounded:
//
//	byte    valueVersion (1)
//	string  deriver base, "" for none
//	byte    NAR hash algo; string digest (len must equal the algo's size)
//	uvarint NAR size
//	varint  registration time (unix seconds, signed)
//	byte    ultimate (0 or 1)
//	uvarint n; n × string reference base (sorted, no duplicates)
//	uvarint n; n × string signature
//	string  CA
//
// Nothing follows the CA; trailing bytes are corruption.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

const (
	schemaVersion = "1"
	valueVersion  = 1

	keySchema   = "meta/schema"
	keyInstance = "meta/instance"

	prefixValid    = "v/"
	prefixReferrer = "r/"
	prefixDrvOut   = "d/"
	prefixDeriver  = "o/"
	prefixPending  = "p/"

	// maxStringLen bounds every decoded string (signatures and CA strings are
	// far shorter; store path bases are at most 32+1+211).
	maxStringLen = 1 << 16
	// maxListLen bounds reference and signature counts.
	maxListLen = 1 << 20
)

func validKey(p storepath.Path) []byte   { return []byte(prefixValid + p.Base()) }
func pendingKey(p storepath.Path) []byte { return []byte(prefixPending + p.Base()) }

func referrerKey(ref, referrer storepath.Path) []byte {
	return []byte(prefixReferrer + ref.Base() + "/" + referrer.Base())
}

// referrerPrefix is the prefix of every r/ key of ref's referrers.
func referrerPrefix(ref storepath.Path) []byte {
	return []byte(prefixReferrer + ref.Base() + "/")
}

func drvOutKey(drv storepath.Path, output string) []byte {
	return []byte(prefixDrvOut + drv.Base() + "/" + output)
}

func drvOutPrefix(drv storepath.Path) []byte { return []byte(prefixDrvOut + drv.Base() + "/") }

func deriverKey(out, drv storepath.Path) []byte {
	return []byte(prefixDeriver + out.Base() + "/" + drv.Base())
}

func deriverPrefix(out storepath.Path) []byte { return []byte(prefixDeriver + out.Base() + "/") }

// splitPair splits "<prefix><a>/<b>" into a and b.
func splitPair(key []byte, prefix string) (string, string, error) {
	rest, ok := bytes.CutPrefix(key, []byte(prefix))
	if !ok {
		return "", "", fmt.Errorf("%w: key %q lacks prefix %q", ErrCorrupt, key, prefix)
	}
	a, b, ok := bytes.Cut(rest, []byte("/"))
	if !ok || len(a) == 0 || len(b) == 0 {
		return "", "", fmt.Errorf("%w: malformed key %q", ErrCorrupt, key)
	}
	return string(a), string(b), nil
}

// parseKeyPath reads the store path base from key after prefix.
func parseKeyPath(key []byte, prefix string) (storepath.Path, error) {
	rest, ok := bytes.CutPrefix(key, []byte(prefix))
	if !ok {
		return storepath.Path{}, fmt.Errorf("%w: key %q lacks prefix %q", ErrCorrupt, key, prefix)
	}
	p, err := storepath.ParseBase(string(rest))
	if err != nil {
		return storepath.Path{}, fmt.Errorf("%w: key %q: %v", ErrCorrupt, key, err)
	}
	return p, nil
}

// parseBaseField parses a base read out of a key or value.
func parseBaseField(what, s string) (storepath.Path, error) {
	p, err := storepath.ParseBase(s)
	if err != nil {
		return storepath.Path{}, fmt.Errorf("%w: %s %q: %v", ErrCorrupt, what, s, err)
	}
	return p, nil
}

func encodeInfo(info *PathInfo) []byte {
	b := make([]byte, 0, 128+len(info.References)*64)
	b = append(b, valueVersion)
	b = appendString(b, info.Deriver.Base())
	b = append(b, byte(info.NarHash.Algo))
	b = appendString(b, string(info.NarHash.Digest))
	b = binary.AppendUvarint(b, info.NarSize)
	b = binary.AppendVarint(b, info.RegistrationTime)
	b = append(b, boolByte(info.Ultimate))
	b = binary.AppendUvarint(b, uint64(len(info.References)))
	for _, r := range info.References {
		b = appendString(b, r.Base())
	}
	b = binary.AppendUvarint(b, uint64(len(info.Sigs)))
	for _, s := range info.Sigs {
		b = appendString(b, s)
	}
	return appendString(b, info.CA)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// decoder reads a value strictly: the first error sticks, every length is
// checked against what remains before anything is allocated.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated value")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail(errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad uvarint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxStringLen || n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("string length %d exceeds the %d bytes left", n, len(d.b)))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a list length; each element takes at least one byte.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && (n > maxListLen || n > uint64(len(d.b))) {
		d.fail(fmt.Errorf("list length %d exceeds the %d bytes left", n, len(d.b)))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// decodeInfo decodes the value of v/<p>. Any malformation wraps ErrCorrupt.
func decodeInfo(p storepath.Path, val []byte) (PathInfo, error) {
	info, err := decodeFields(val)
	if err != nil {
		return PathInfo{}, fmt.Errorf("%w: path info of %s: %v", ErrCorrupt, p.Base(), err)
	}
	info.Path = p
	return info, nil
}

func decodeFields(val []byte) (PathInfo, error) {
	d := decoder{b: val}
	var info PathInfo
	if v := d.byte(); d.err == nil && v != valueVersion {
		return info, fmt.Errorf("unknown value version %d", v)
	}
	deriver := d.string()
	algo := nixhash.Algo(d.byte())
	digest := d.string()
	info.NarSize = d.uvarint()
	info.RegistrationTime = d.varint()
	ultimate := d.byte()
	refs := make([]string, d.count())
	for i := range refs {
		refs[i] = d.string()
	}
	info.Sigs = make([]string, d.count())
	for i := range info.Sigs {
		info.Sigs[i] = d.string()
	}
	info.CA = d.string()
	if d.err != nil {
		return info, d.err
	}
	if len(d.b) != 0 {
		return info, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if !algo.Valid() || len(digest) != algo.Size() {
		return info, fmt.Errorf("bad NAR hash (algo %d, %d bytes)", algo, len(digest))
	}
	info.NarHash = nixhash.Hash{Algo: algo, Digest: []byte(digest)}
	if ultimate > 1 {
		return info, fmt.Errorf("bad ultimate byte %d", ultimate)
	}
	info.Ultimate = ultimate == 1
	if deriver != "" {
		p, err := storepath.ParseBase(deriver)
		if err != nil {
			return info, fmt.Errorf("deriver: %v", err)
		}
		info.Deriver = p
	}
	return info, decodeRefs(&info, refs)
}

func decodeRefs(info *PathInfo, refs []string) error {
	if !slices.IsSorted(refs) {
		return errors.New("references not sorted")
	}
	info.References = make([]storepath.Path, len(refs))
	for i, s := range refs {
		if i > 0 && refs[i-1] == s {
			return fmt.Errorf("duplicate reference %q", s)
		}
		p, err := storepath.ParseBase(s)
		if err != nil {
			return fmt.Errorf("reference: %v", err)
		}
		info.References[i] = p
	}
	return nil
}
