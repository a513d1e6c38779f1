// Package aterm is the strict parser of Nix derivation files (.drv ATerm) into nix/drv values; it is never linked into the monitor.
package aterm

import (
	"bytes"
	"fmt"
	"strings"

	"privnix/nix/drv"
)

// Limits bound what a parse may accept. Memory use is linear in the input
// size whatever the limits.
type Limits struct {
	MaxSize  int // bytes of ATerm text
	MaxItems int // list elements in total: outputs, inputs and their output names, sources, args, env entries
}

// DefaultLimits fit every real derivation seen (nixpkgs' largest are a few MiB).
var DefaultLimits = Limits{MaxSize: 32 << 20, MaxItems: 1 << 20}

// Error is a refused ATerm: what was wrong and at which byte offset, or
// Offset -1 when the whole input is at fault (size, canonical order).
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string {
	if e.Offset < 0 {
		return "derivation ATerm refused: " + e.Msg
	}
	return fmt.Sprintf("derivation ATerm refused at byte %d: %s", e.Offset, e.Msg)
}

// Parse reads a derivation in the canonical ATerm form Nix 2.8 writes
// (`Derive(...)`) with DefaultLimits.
func Parse(b []byte) (*drv.Derivation, error) {
	return ParseLimits(b, DefaultLimits)
}

// ParseLimits reads a derivation in the canonical ATerm form of Nix 2.8 and
// refuses everything else: other versions and dynamic-derivation forms,
// structure errors, unknown or superfluous escapes, raw control characters
// that Nix would have escaped, NUL bytes, unsorted or duplicate outputs,
// inputs, sources or env keys, and trailing bytes. On success printing the
// result gives b back byte for byte.
func ParseLimits(b []byte, lim Limits) (*drv.Derivation, error) {
	if len(b) > lim.MaxSize {
		return nil, &Error{-1, fmt.Sprintf("%d bytes is more than the limit of %d", len(b), lim.MaxSize)}
	}
	p := &parser{b: b, lim: lim}
	d, err := p.derivation()
	if err != nil {
		return nil, err
	}
	if p.pos != len(b) {
		return nil, p.fail("%d trailing bytes after the derivation", len(b)-p.pos)
	}
	if err := d.Canonical(); err != nil {
		return nil, &Error{-1, err.Error()}
	}
	return d, nil
}

type parser struct {
	b     []byte
	pos   int
	items int
	lim   Limits
}

func (p *parser) fail(format string, args ...any) error {
	return &Error{p.pos, fmt.Sprintf(format, args...)}
}

func (p *parser) derivation() (*drv.Derivation, error) {
	const versioned = "DrvWithVersion("
	if bytes.HasPrefix(p.b, []byte(versioned)) {
		p.pos = len(versioned)
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		if v == "xp-dyn-drv" {
			return nil, p.fail(`derivation version "xp-dyn-drv" (experimental dynamic derivations) is not supported: only Nix 2.8's Derive(...) is`)
		}
		return nil, p.fail("unknown derivation version %q: only Nix 2.8's Derive(...) is supported", v)
	}
	if err := p.lit("Derive("); err != nil {
		return nil, err
	}
	d := &drv.Derivation{}
	var err error
	steps := []func() error{
		func() error { d.Outputs, err = list(p, p.output); return err },
		func() error { return p.lit(",") },
		func() error { d.InputDrvs, err = list(p, p.inputDrv); return err },
		func() error { return p.lit(",") },
		func() error { d.InputSrcs, err = list(p, p.path); return err },
		func() error { return p.lit(",") },
		func() error { d.Platform, err = p.str(); return err },
		func() error { return p.lit(",") },
		func() error { d.Builder, err = p.str(); return err },
		func() error { return p.lit(",") },
		func() error { d.Args, err = list(p, p.str); return err },
		func() error { return p.lit(",") },
		func() error { d.Env, err = list(p, p.envVar); return err },
		func() error { return p.lit(")") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// list reads "[" [elem {"," elem}] "]", counting elements against MaxItems.
func list[T any](p *parser, elem func() (T, error)) ([]T, error) {
	if err := p.lit("["); err != nil {
		return nil, err
	}
	var out []T
	if p.peek(']') {
		p.pos++
		return out, nil
	}
	for {
		if p.items++; p.items > p.lim.MaxItems {
			return nil, p.fail("more than %d list elements", p.lim.MaxItems)
		}
		v, err := elem()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.peek(']') {
			p.pos++
			return out, nil
		}
		if err := p.lit(","); err != nil {
			return nil, err
		}
	}
}

func (p *parser) output() (o drv.Output, err error) {
	if err = p.lit("("); err != nil {
		return o, err
	}
	if o.Name, err = p.str(); err != nil {
		return o, err
	}
	if err = p.lit(","); err != nil {
		return o, err
	}
	start := p.pos
	if o.Path, err = p.str(); err != nil {
		return o, err
	}
	if o.Path != "" && o.Path[0] != '/' {
		return o, &Error{start, fmt.Sprintf("output path %q is not absolute", o.Path)}
	}
	for _, f := range []*string{&o.HashAlgo, &o.Hash} {
		if err = p.lit(","); err != nil {
			return o, err
		}
		if *f, err = p.str(); err != nil {
			return o, err
		}
	}
	return o, p.lit(")")
}

func (p *parser) inputDrv() (in drv.InputDrv, err error) {
	if err = p.lit("("); err != nil {
		return in, err
	}
	if in.Path, err = p.path(); err != nil {
		return in, err
	}
	if err = p.lit(","); err != nil {
		return in, err
	}
	if p.peek('(') {
		return in, p.fail("input %s uses the dynamic-derivation form (outputs, dynamic outputs), which is not supported", in.Path)
	}
	if in.Outputs, err = list(p, p.str); err != nil {
		return in, err
	}
	return in, p.lit(")")
}

func (p *parser) envVar() (e drv.EnvVar, err error) {
	if err = p.lit("("); err != nil {
		return e, err
	}
	if e.Key, err = p.str(); err != nil {
		return e, err
	}
	if err = p.lit(","); err != nil {
		return e, err
	}
	if e.Value, err = p.str(); err != nil {
		return e, err
	}
	return e, p.lit(")")
}

// path reads a string that must be an absolute path.
func (p *parser) path() (string, error) {
	start := p.pos
	s, err := p.str()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, "/") {
		return "", &Error{start, fmt.Sprintf("path %q is not absolute", s)}
	}
	return s, nil
}

func (p *parser) peek(c byte) bool {
	return p.pos < len(p.b) && p.b[p.pos] == c
}

func (p *parser) lit(s string) error {
	if !bytes.HasPrefix(p.b[p.pos:], []byte(s)) {
		if p.pos >= len(p.b) {
			return p.fail("input ends where %q was expected", s)
		}
		return p.fail("expected %q, found %q", s, p.b[p.pos])
	}
	p.pos += len(s)
	return nil
}

// str reads a quoted string, undoing Nix's five escapes. Any other escape, and
// any raw byte that Nix would have escaped, is refused: it cannot come from
// Nix's printer. NUL is refused too.
func (p *parser) str() (string, error) {
	if err := p.lit(`"`); err != nil {
		return "", err
	}
	start := p.pos
	var sb *strings.Builder
	for i := start; i < len(p.b); i++ {
		c := p.b[i]
		switch c {
		case '"':
			p.pos = i + 1
			if sb == nil {
				return string(p.b[start:i]), nil
			}
			return sb.String(), nil
		case '\\':
			if i+1 >= len(p.b) {
				break
			}
			r, ok := unescape[p.b[i+1]]
			if !ok {
				p.pos = i
				return "", p.fail("unknown escape \\%q in string", p.b[i+1])
			}
			if sb == nil {
				sb = &strings.Builder{}
				sb.Grow(len(p.b[start:i]))
				sb.Write(p.b[start:i])
			}
			sb.WriteByte(r)
			i++
			continue
		case '\n', '\r', '\t', 0:
			p.pos = i
			return "", p.fail("raw byte %q in string (Nix escapes it or never writes it)", c)
		}
		if sb != nil {
			sb.WriteByte(c)
		}
	}
	p.pos = start - 1
	return "", p.fail("unterminated string")
}

var unescape = map[byte]byte{'"': '"', '\\': '\\', 'n': '\n', 'r': '\r', 't': '\t'}
