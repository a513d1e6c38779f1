// Package conf parses nix.conf files into the typed settings the privnix daemon uses.
package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// ReadFunc returns the contents of the file at an absolute path. A missing file
// must be reported with an error for which errors.Is(err, fs.ErrNotExist) holds.
type ReadFunc func(path string) ([]byte, error)

// Line is one `name = value` assignment, with where it was written.
type Line struct {
	Name  string
	Value string // tokens re-joined by single spaces
	File  string
	Line  int // 1-based
}

// Where returns "file:line" for messages.
func (l Line) Where() string { return fmt.Sprintf("%s:%d", l.File, l.Line) }

// Limits on include nesting, so that a loop or an include bomb fails instead of
// exhausting memory.
const (
	MaxIncludeDepth = 16
	MaxIncludes     = 256
	MaxFileSize     = 1 << 20
)

// ErrSyntax is wrapped by every error about the shape of a configuration line.
var ErrSyntax = errors.New("nix.conf syntax error")

// Parse reads the configuration file at file (an absolute path) through read and
// returns its assignments in order, with includes expanded in place.
func Parse(file string, read ReadFunc) ([]Line, error) {
	data, err := read(file)
	if err != nil {
		return nil, fmt.Errorf("reading configuration file '%s': %w", file, err)
	}
	return ParseBytes(file, data, read)
}

// ParseBytes parses data as if it were the contents of file; file names the
// source in messages and is the base for relative includes.
func ParseBytes(file string, data []byte, read ReadFunc) ([]Line, error) {
	p := &parser{read: read}
	if err := p.file(file, data, nil); err != nil {
		return nil, err
	}
	return p.lines, nil
}

type parser struct {
	read     ReadFunc
	lines    []Line
	includes int
}

// file parses one file; stack holds the files that include it, outermost first.
func (p *parser) file(name string, data []byte, stack []string) error {
	if len(data) > MaxFileSize {
		return fmt.Errorf("%w: configuration file '%s' is larger than %d bytes", ErrSyntax, name, MaxFileSize)
	}
	stack = append(stack, name)
	for i, raw := range strings.Split(string(data), "\n") {
		if err := p.line(name, i+1, raw, stack); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) line(name string, n int, raw string, stack []string) error {
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	tokens := strings.FieldsFunc(raw, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	if len(tokens) == 0 {
		return nil
	}
	where := fmt.Sprintf("%s:%d", name, n)
	if tokens[0] == "include" || tokens[0] == "!include" {
		if len(tokens) != 2 {
			return fmt.Errorf("%w: %s: illegal configuration line '%s': include takes exactly one file name", ErrSyntax, where, strings.TrimSpace(raw))
		}
		return p.include(where, name, tokens[1], tokens[0] == "!include", stack)
	}
	if len(tokens) < 2 || tokens[1] != "=" {
		return fmt.Errorf("%w: %s: illegal configuration line '%s': expected 'name = value' with spaces around '='", ErrSyntax, where, strings.TrimSpace(raw))
	}
	p.lines = append(p.lines, Line{Name: tokens[0], Value: strings.Join(tokens[2:], " "), File: name, Line: n})
	return nil
}

func (p *parser) include(where, from, target string, optional bool, stack []string) error {
	if !path.IsAbs(target) {
		target = path.Join(path.Dir(from), target)
	}
	target = path.Clean(target)
	for _, s := range stack {
		if s == target {
			return fmt.Errorf("%w: %s: file '%s' includes itself (include loop)", ErrSyntax, where, target)
		}
	}
	if len(stack) >= MaxIncludeDepth {
		return fmt.Errorf("%w: %s: includes nested deeper than %d files", ErrSyntax, where, MaxIncludeDepth)
	}
	if p.includes++; p.includes > MaxIncludes {
		return fmt.Errorf("%w: %s: more than %d includes in total", ErrSyntax, where, MaxIncludes)
	}
	if p.read == nil {
		return fmt.Errorf("%s: cannot include '%s': no file reader was given", where, target)
	}
	data, err := p.read(target)
	if errors.Is(err, fs.ErrNotExist) {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: file '%s' included from '%s' not found", where, target, from)
	}
	if err != nil {
		return fmt.Errorf("%s: reading '%s' included from '%s': %w", where, target, from, err)
	}
	return p.file(target, data, stack)
}
