package wire

import (
	"encoding/binary"
	"io"
)

// NAR limits for CopyNAR: deep enough for real trees, small enough to bound the recursion.
const (
	MaxNARDepth = 256
	maxNARToken = MaxPathLen
)

// CopyNAR copies one NAR (§5.1) that is inline in the stream, byte for byte, to dst. It
// follows the NAR's structure only to find where it ends (old clients send NARs without
// a length); the strict checks belong to the NAR reader that consumes dst.
func CopyNAR(dst io.Writer, r *Reader) error {
	c := narCopier{r: r, dst: dst}
	if err := c.expect("nix-archive-1"); err != nil {
		return err
	}
	return c.node(0)
}

type narCopier struct {
	r   *Reader
	dst io.Writer
}

func (c *narCopier) u64() (uint64, error) {
	n, err := c.r.U64()
	if err != nil {
		return 0, err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	_, err = c.dst.Write(b[:])
	return n, err
}

func (c *narCopier) token() (string, error) {
	b, err := c.r.Bytes(maxNARToken, "NAR token")
	if err != nil {
		return "", err
	}
	buf := make([]byte, 0, 8+len(b)+8)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(b)))
	buf = append(buf, b...)
	buf = append(buf, zeros[:(8-len(b)%8)%8]...)
	_, err = c.dst.Write(buf)
	return string(b), err
}

func (c *narCopier) expect(want string) error {
	s, err := c.token()
	if err == nil && s != want {
		err = protoErr("NAR: expected %q, got %q", want, s)
	}
	return err
}

func (c *narCopier) node(depth int) error {
	if depth > MaxNARDepth {
		return protoErr("NAR: nesting deeper than %d", MaxNARDepth)
	}
	if err := c.expect("("); err != nil {
		return err
	}
	if err := c.expect("type"); err != nil {
		return err
	}
	t, err := c.token()
	if err != nil {
		return err
	}
	switch t {
	case "regular":
		return c.regular()
	case "symlink":
		if err := c.expect("target"); err != nil {
			return err
		}
		if _, err := c.token(); err != nil {
			return err
		}
		return c.expect(")")
	case "directory":
		return c.directory(depth)
	}
	return protoErr("NAR: unknown node type %q", t)
}

func (c *narCopier) regular() error {
	s, err := c.token()
	if err != nil {
		return err
	}
	if s == "executable" {
		if err := c.expect(""); err != nil {
			return err
		}
		if s, err = c.token(); err != nil {
			return err
		}
	}
	if s != "contents" {
		return protoErr("NAR: expected \"contents\", got %q", s)
	}
	n, err := c.u64()
	if err != nil {
		return err
	}
	if _, err := io.CopyN(c.dst, c.r, int64(n)); err != nil {
		return eof(err)
	}
	if err := c.r.padding(n, "NAR contents"); err != nil {
		return err
	}
	if _, err := c.dst.Write(zeros[:(8-n%8)%8]); err != nil {
		return err
	}
	return c.expect(")")
}

func (c *narCopier) directory(depth int) error {
	for {
		s, err := c.token()
		if err != nil {
			return err
		}
		if s == ")" {
			return nil
		}
		if s != "entry" {
			return protoErr("NAR: expected \"entry\" or \")\", got %q", s)
		}
		for _, want := range []string{"(", "name"} {
			if err := c.expect(want); err != nil {
				return err
			}
		}
		if _, err := c.token(); err != nil {
			return err
		}
		if err := c.expect("node"); err != nil {
			return err
		}
		if err := c.node(depth + 1); err != nil {
			return err
		}
		if err := c.expect(")"); err != nil {
			return err
		}
	}
}
