package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"privnix/nix/drv"
	"privnix/nix/drv/aterm"
	"privnix/nix/storepath"
)

// DrvCmd groups the derivation commands.
type DrvCmd struct {
	Show DrvShowCmd `cmd:"" help:"Print derivations as JSON, as nix show-derivation (Nix 2.8) does."`
}

// DrvShowCmd is `privnix drv show FILE...`.
type DrvShowCmd struct {
	Files []string `arg:"" name:"file" help:".drv files to show; each is keyed by the store path its contents give (store dir from NIX_STORE_DIR)."`
}

// Run parses every file strictly, computes its .drv store path and prints
// them all, sorted by path, in Nix 2.8's JSON layout.
func (c *DrvShowCmd) Run() error {
	dir, err := drvStoreDir()
	if err != nil {
		return err
	}
	shown := map[string]*drv.Derivation{}
	for _, f := range c.Files {
		p, d, err := drvRead(dir, f)
		if err != nil {
			return err
		}
		shown[dir.String(p)] = d
	}
	w := bufio.NewWriter(os.Stdout)
	drvWriteJSON(w, shown)
	return w.Flush()
}

func drvStoreDir() (storepath.Dir, error) {
	s := os.Getenv("NIX_STORE_DIR")
	if s == "" {
		s = "/nix/store"
	}
	dir, err := storepath.NewDir(s)
	if err != nil {
		return "", fmt.Errorf("NIX_STORE_DIR: %w", err)
	}
	return dir, nil
}

// drvRead parses file f and computes its store path. The derivation name is
// the file's name without ".drv" (and without a store hash part). A file in
// the store whose path is not the one its contents give is refused.
func drvRead(dir storepath.Dir, f string) (storepath.Path, *drv.Derivation, error) {
	fh, err := os.Open(f)
	if err != nil {
		return storepath.Path{}, nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, int64(aterm.DefaultLimits.MaxSize)+1))
	if err != nil {
		return storepath.Path{}, nil, fmt.Errorf("reading %s: %w", f, err)
	}
	d, err := aterm.Parse(b)
	if err != nil {
		return storepath.Path{}, nil, fmt.Errorf("%s: %w", f, err)
	}
	base := filepath.Base(f)
	if sp, err := storepath.ParseBase(base); err == nil {
		base = sp.Name()
	}
	name, ok := strings.CutSuffix(base, ".drv")
	if !ok {
		return storepath.Path{}, nil, fmt.Errorf("%s: a derivation file's name must end in .drv", f)
	}
	p, err := drv.Path(dir, name, d)
	if err != nil {
		return storepath.Path{}, nil, fmt.Errorf("%s: %w", f, err)
	}
	if abs, err := filepath.Abs(f); err == nil {
		if inStore, err := dir.Parse(abs); err == nil && inStore != p {
			return storepath.Path{}, nil, fmt.Errorf("%s: its contents give the store path %s, not its own", f, dir.String(p))
		}
	}
	return p, d, nil
}

// drvWriteJSON prints derivations keyed by path the way Nix 2.8's
// show-derivation does: keys in a fixed order, two-space indentation.
func drvWriteJSON(w *bufio.Writer, drvs map[string]*drv.Derivation) {
	j := &drvJSON{w: w}
	paths := make([]string, 0, len(drvs))
	for p := range drvs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	j.object(len(paths), func(i int) {
		j.key(paths[i])
		drvJSONOne(j, drvs[paths[i]])
	})
	w.WriteByte('\n')
}

func drvJSONOne(j *drvJSON, d *drv.Derivation) {
	fields := []func(){
		func() {
			j.key("outputs")
			j.object(len(d.Outputs), func(i int) {
				o := d.Outputs[i]
				j.key(o.Name)
				var kv [][2]string // Nix 2.8 leaves out what an output kind lacks
				for _, f := range [][2]string{{"path", o.Path}, {"hashAlgo", o.HashAlgo}, {"hash", o.Hash}} {
					if f[1] != "" {
						kv = append(kv, f)
					}
				}
				j.object(len(kv), func(i int) { j.key(kv[i][0]); j.str(kv[i][1]) })
			})
		},
		func() { j.key("inputSrcs"); j.strings(d.InputSrcs) },
		func() {
			j.key("inputDrvs")
			j.object(len(d.InputDrvs), func(i int) { j.key(d.InputDrvs[i].Path); j.strings(d.InputDrvs[i].Outputs) })
		},
		func() { j.key("system"); j.str(d.Platform) },
		func() { j.key("builder"); j.str(d.Builder) },
		func() { j.key("args"); j.strings(d.Args) },
		func() {
			j.key("env")
			j.object(len(d.Env), func(i int) { j.key(d.Env[i].Key); j.str(d.Env[i].Value) })
		},
	}
	j.object(len(fields), func(i int) { fields[i]() })
}

// drvJSON writes indented JSON with Nix 2.8's string escaping.
type drvJSON struct {
	w     *bufio.Writer
	depth int
}

func (j *drvJSON) newline() {
	j.w.WriteByte('\n')
	for i := 0; i < j.depth; i++ {
		j.w.WriteString("  ")
	}
}

func (j *drvJSON) container(open, close byte, n int, elem func(int)) {
	j.w.WriteByte(open)
	if n == 0 {
		j.w.WriteByte(close)
		return
	}
	j.depth++
	for i := 0; i < n; i++ {
		if i > 0 {
			j.w.WriteByte(',')
		}
		j.newline()
		elem(i)
	}
	j.depth--
	j.newline()
	j.w.WriteByte(close)
}

func (j *drvJSON) object(n int, elem func(int)) { j.container('{', '}', n, elem) }

func (j *drvJSON) strings(l []string) {
	j.container('[', ']', len(l), func(i int) { j.str(l[i]) })
}

func (j *drvJSON) key(k string) {
	j.str(k)
	j.w.WriteString(": ")
}

// str escapes as Nix 2.8 does: \" \\ \n \r \t, other bytes below 0x20 as
// \u00xx, everything else (DEL, non-ASCII, invalid UTF-8) raw.
func (j *drvJSON) str(s string) {
	j.w.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			j.w.WriteByte('\\')
			j.w.WriteByte(c)
		case c == '\n':
			j.w.WriteString(`\n`)
		case c == '\r':
			j.w.WriteString(`\r`)
		case c == '\t':
			j.w.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(j.w, `\u%04x`, c)
		default:
			j.w.WriteByte(c)
		}
	}
	j.w.WriteByte('"')
}
