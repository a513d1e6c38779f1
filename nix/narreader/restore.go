package narreader

import (
	"fmt"
	"io"
)

// Sink receives an archive as calls in grammar order: a node is File,
// Symlink, or StartDir followed by (Entry, node)* and EndDir. *nar.Writer is
// a Sink; so is the file system restorer in internal/narfs.
type Sink interface {
	File(executable bool, size uint64, contents io.Reader) error
	Symlink(target string) error
	StartDir() error
	Entry(name string) error
	EndDir() error
}

// Restore reads one archive strictly from r and replays it into the sink.
// It stops at the root node's end without reading further and does not
// close the sink. A sink need not read all of a file's contents.
func Restore(r io.Reader, into Sink, lim Limits) error {
	rd := NewReader(r, lim)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := deliver(into, ev); err != nil {
			if rd.err != nil { // the sink failed because the archive did
				return rd.err
			}
			return err
		}
	}
}

func deliver(into Sink, ev Event) error {
	switch ev.Kind {
	case KindFile:
		return into.File(ev.Executable, ev.Size, ev.Contents)
	case KindSymlink:
		return into.Symlink(ev.Target)
	case KindDirStart:
		return into.StartDir()
	case KindDirEnd:
		return into.EndDir()
	case KindEntry:
		return into.Entry(ev.Name)
	}
	return fmt.Errorf("narreader: unknown event kind %v", ev.Kind)
}
