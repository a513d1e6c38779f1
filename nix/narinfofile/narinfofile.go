// Package narinfofile reads and writes .narinfo files, a binary cache's
// text metadata. It is linked into the fetcher, never into the monitor,
// which gets the fields and checks signatures with package narinfo.
package narinfofile

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"

	"privnix/nix/narinfo"
)

// MaxSize is the largest .narinfo text Parse accepts.
const MaxSize = 1 << 20

// NarInfo is the content of a binary cache's <hashPart>.narinfo file.
type NarInfo struct {
	StorePath   storepath.Path
	URL         string           // of the (compressed) NAR, relative to the cache root
	Compression string           // "bzip2" when the file does not say
	FileHash    nixhash.Hash     // zero if absent
	FileSize    uint64           // 0 if absent
	NarHash     nixhash.Hash     // required
	NarSize     uint64           // required, non-zero
	References  []storepath.Path // may include StorePath itself
	Deriver     storepath.Path   // zero if absent
	System      string
	Sigs        []narinfo.Signature
	CA          *storepath.ContentAddress // nil if absent
}

// narinfo.Fingerprint returns the string that the path's signatures sign.
func (n *NarInfo) Fingerprint(d storepath.Dir) string {
	return narinfo.Fingerprint(d, n.StorePath, n.NarHash, n.NarSize, n.References)
}

// Parse parses .narinfo text for a cache whose store directory is d. Every
// line is "Key: value\n"; unknown keys are ignored as Nix does, but repeated
// keys (other than Sig), malformed values and missing required keys are refused.
func Parse(d storepath.Dir, data []byte) (*NarInfo, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", narinfo.ErrInvalid, len(data), MaxSize)
	}
	n := &NarInfo{}
	seen := map[string]bool{}
	for lineNo := 1; len(data) > 0; lineNo++ {
		eol := bytes.IndexByte(data, '\n')
		if eol < 0 {
			return nil, fmt.Errorf("%w: line %d does not end in a newline", narinfo.ErrInvalid, lineNo)
		}
		line := string(data[:eol])
		data = data[eol+1:]
		key, value, ok := strings.Cut(line, ": ")
		if !ok || key == "" {
			return nil, fmt.Errorf("%w: line %d is not \"Key: value\"", narinfo.ErrInvalid, lineNo)
		}
		if key != "Sig" && seen[key] {
			return nil, fmt.Errorf("%w: line %d repeats %s", narinfo.ErrInvalid, lineNo, key)
		}
		seen[key] = true
		if err := n.set(d, key, value); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", lineNo, key, err)
		}
	}
	switch {
	case n.StorePath.IsZero():
		return nil, fmt.Errorf("%w: no StorePath", narinfo.ErrInvalid)
	case n.URL == "":
		return nil, fmt.Errorf("%w: no URL", narinfo.ErrInvalid)
	case n.NarHash.IsZero():
		return nil, fmt.Errorf("%w: no NarHash", narinfo.ErrInvalid)
	case n.NarSize == 0:
		return nil, fmt.Errorf("%w: no NarSize or NarSize 0", narinfo.ErrInvalid)
	}
	if n.Compression == "" {
		n.Compression = "bzip2"
	}
	return n, nil
}

// set stores one field's value.
func (n *NarInfo) set(d storepath.Dir, key, value string) error {
	var err error
	switch key {
	case "StorePath":
		n.StorePath, err = d.Parse(value)
	case "URL":
		err = checkText(value)
		n.URL = value
	case "Compression":
		err = checkText(value)
		n.Compression = value
	case "FileHash":
		n.FileHash, err = nixhash.Parse(value)
	case "FileSize":
		n.FileSize, err = parseSize(value)
	case "NarHash":
		n.NarHash, err = nixhash.Parse(value)
	case "NarSize":
		n.NarSize, err = parseSize(value)
	case "References":
		n.References, err = parseRefs(value)
	case "Deriver":
		if value != "unknown-deriver" {
			n.Deriver, err = storepath.ParseBase(value)
		}
	case "System":
		err = checkText(value)
		n.System = value
	case "Sig":
		var s narinfo.Signature
		s, err = narinfo.ParseSignature(value)
		n.Sigs = append(n.Sigs, s)
	case "CA":
		var ca storepath.ContentAddress
		ca, err = storepath.ParseContentAddress(value)
		n.CA = &ca
	}
	return err
}

// checkText refuses empty values, surrounding spaces and control characters.
func checkText(v string) error {
	if v == "" || strings.TrimSpace(v) != v {
		return fmt.Errorf("%w: empty value or surrounding space in %q", narinfo.ErrInvalid, v)
	}
	for _, c := range []byte(v) {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: control character %q in %q", narinfo.ErrInvalid, c, v)
		}
	}
	return nil
}

// parseSize parses a canonical decimal uint64 (no sign, no leading zeros).
func parseSize(v string) (uint64, error) {
	u, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(u, 10) != v {
		return 0, fmt.Errorf("%w: %q is not a decimal size", narinfo.ErrInvalid, v)
	}
	return u, nil
}

// parseRefs parses space-separated base names; the empty value means none.
func parseRefs(v string) ([]storepath.Path, error) {
	if v == "" {
		return nil, nil
	}
	var refs []storepath.Path
	for _, f := range strings.Split(v, " ") {
		p, err := storepath.ParseBase(f)
		if err != nil {
			return nil, err
		}
		refs = append(refs, p)
	}
	return refs, nil
}

// String prints n as Nix writes .narinfo files, for store directory d.
func (n *NarInfo) String(d storepath.Dir) string {
	var b strings.Builder
	field := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	field("StorePath", d.String(n.StorePath))
	field("URL", n.URL)
	field("Compression", n.Compression)
	if !n.FileHash.IsZero() {
		field("FileHash", n.FileHash.String())
	}
	if n.FileSize != 0 {
		field("FileSize", strconv.FormatUint(n.FileSize, 10))
	}
	field("NarHash", n.NarHash.String())
	field("NarSize", strconv.FormatUint(n.NarSize, 10))
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = r.Base()
	}
	field("References", strings.Join(refs, " "))
	if !n.Deriver.IsZero() {
		field("Deriver", n.Deriver.Base())
	}
	if n.System != "" {
		field("System", n.System)
	}
	for _, s := range n.Sigs {
		field("Sig", s.String())
	}
	if n.CA != nil {
		field("CA", n.CA.String())
	}
	return b.String()
}
