package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs"
	"privnix/nix/narreader"
)

// NarCmd is `privnix nar`: serialise, restore and list Nix archives.
type NarCmd struct {
	Dump    NarDumpCmd    `cmd:"" help:"Write the NAR of a path to stdout (nix-store --dump)."`
	Restore NarRestoreCmd `cmd:"" help:"Unpack a NAR from stdin into a new path (nix-store --restore), strictly."`
	Ls      NarLsCmd      `cmd:"" help:"List the contents of a NAR (nix nar ls)."`
}

// narIOBuf is the buffer size for NAR streams on stdin and stdout.
const narIOBuf = 1 << 20

// NarDumpCmd is `privnix nar dump PATH`.
type NarDumpCmd struct {
	Path string `arg:"" help:"File, symlink or directory to serialise (a symlink is not followed)."`
}

// Run writes the NAR to stdout.
func (c *NarDumpCmd) Run() error { return narfs.DumpPath(os.Stdout, c.Path) }

// NarRestoreCmd is `privnix nar restore DIR`.
type NarRestoreCmd struct {
	Dir string `arg:"" help:"Path to create; it must not exist."`
}

// Run unpacks stdin into Dir.
func (c *NarRestoreCmd) Run() error { return narRestore(os.Stdin, c.Dir) }

// narRestore unpacks one strictly read NAR from r as path and refuses
// trailing bytes after it.
func narRestore(r io.Reader, path string) error {
	clean := filepath.Clean(path)
	dir, name := filepath.Dir(clean), filepath.Base(clean)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	br := bufio.NewReaderSize(r, narIOBuf)
	if err := narfs.Restore(br, fd, name, narreader.DefaultLimits); err != nil {
		return err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return errors.New("restore refused: trailing data after the archive")
		}
		return err
	}
	return nil
}

// NarLsCmd is `privnix nar ls`.
type NarLsCmd struct {
	Recursive bool     `short:"R" help:"List subdirectories recursively."`
	Long      bool     `short:"l" help:"Show type, permissions and size."`
	Args      []string `arg:"" optional:"" name:"nar-and-path" help:"NAR file (default stdin) and path inside it (default /)."`
}

// Run lists the NAR from the file argument or stdin.
func (c *NarLsCmd) Run() error {
	in := io.Reader(os.Stdin)
	inner := "/"
	switch len(c.Args) {
	case 0:
	case 1, 2:
		f, err := os.Open(c.Args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if len(c.Args) == 2 {
			inner = c.Args[1]
		}
	default:
		return errors.New("nar ls takes at most a NAR file and a path")
	}
	out := bufio.NewWriter(os.Stdout)
	err := c.list(out, bufio.NewReaderSize(in, narIOBuf), inner)
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

// list prints the node at path inner, or its entries if it is a directory,
// the way `nix nar ls` does. The whole archive is read and checked.
func (c *NarLsCmd) list(out io.Writer, r io.Reader, inner string) error {
	if !strings.HasPrefix(inner, "/") {
		return fmt.Errorf("not an absolute path: '%s'", inner)
	}
	want := strings.FieldsFunc(inner, func(r rune) bool { return r == '/' })
	rd := narreader.NewReader(r, narreader.DefaultLimits)
	var comps []string
	found := false
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch ev.Kind {
		case narreader.KindEntry:
			comps = append(comps, ev.Name)
			continue
		case narreader.KindDirEnd:
			comps = popComp(comps)
			continue
		}
		if isPrefix(want, comps) {
			found = found || len(comps) == len(want)
			if err := c.show(out, ev, want, comps); err != nil {
				return err
			}
		}
		if ev.Kind != narreader.KindDirStart {
			comps = popComp(comps)
		}
	}
	if !found {
		return fmt.Errorf("path '%s' does not exist", inner)
	}
	return nil
}

func popComp(comps []string) []string {
	if len(comps) == 0 {
		return comps
	}
	return comps[:len(comps)-1]
}

func isPrefix(prefix, comps []string) bool {
	if len(comps) < len(prefix) {
		return false
	}
	for i, p := range prefix {
		if comps[i] != p {
			return false
		}
	}
	return true
}

// show prints one node found at or below the listed path.
func (c *NarLsCmd) show(out io.Writer, ev narreader.Event, want, comps []string) error {
	var name string
	switch rel := comps[len(want):]; {
	case len(rel) == 0 && ev.Kind == narreader.KindDirStart:
		return nil // the listed directory itself: its entries are shown
	case len(rel) == 0:
		if len(want) > 0 {
			name = want[len(want)-1]
		}
	case len(rel) == 1 || c.Recursive:
		name = "./" + strings.Join(rel, "/")
	default:
		return nil
	}
	if !c.Long {
		_, err := fmt.Fprintln(out, name)
		return err
	}
	mode, size, suffix := "dr-xr-xr-x", uint64(0), ""
	switch ev.Kind {
	case narreader.KindFile:
		mode, size = "-r--r--r--", ev.Size
		if ev.Executable {
			mode = "-r-xr-xr-x"
		}
	case narreader.KindSymlink:
		mode, suffix = "lrwxrwxrwx", " -> "+ev.Target
	}
	_, err := fmt.Fprintf(out, "%s %20d %s%s\n", mode, size, name, suffix)
	return err
}
