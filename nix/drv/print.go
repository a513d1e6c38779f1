package drv

import (
	"bytes"
)

// ATerm returns the canonical ATerm text of d, byte for byte what Nix 2.8
// writes into a .drv file. It refuses a Derivation that is not canonical, so
// that printing a value and comparing it with a file proves the file canonical.
func (d *Derivation) ATerm() ([]byte, error) {
	if err := d.Canonical(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	d.writeATerm(&b, nil, false)
	return b.Bytes(), nil
}

// writeATerm prints d. If inputs is not nil it replaces d.InputDrvs (hash
// modulo writes hex hashes there); if mask is set, output paths and the env
// values of output names are printed as "".
func (d *Derivation) writeATerm(b *bytes.Buffer, inputs []InputDrv, mask bool) {
	if inputs == nil {
		inputs = d.InputDrvs
	}
	b.WriteString("Derive([")
	for i, o := range d.Outputs {
		comma(b, i)
		b.WriteByte('(')
		str(b, o.Name)
		b.WriteByte(',')
		if mask {
			str(b, "")
		} else {
			str(b, o.Path)
		}
		b.WriteByte(',')
		str(b, o.HashAlgo)
		b.WriteByte(',')
		str(b, o.Hash)
		b.WriteByte(')')
	}
	b.WriteString("],[")
	for i, in := range inputs {
		comma(b, i)
		b.WriteByte('(')
		str(b, in.Path)
		b.WriteByte(',')
		strList(b, in.Outputs)
		b.WriteByte(')')
	}
	b.WriteString("],")
	strList(b, d.InputSrcs)
	b.WriteByte(',')
	str(b, d.Platform)
	b.WriteByte(',')
	str(b, d.Builder)
	b.WriteByte(',')
	strList(b, d.Args)
	b.WriteString(",[")
	for i, e := range d.Env {
		comma(b, i)
		b.WriteByte('(')
		str(b, e.Key)
		b.WriteByte(',')
		if _, isOut := d.Output(e.Key); mask && isOut {
			str(b, "")
		} else {
			str(b, e.Value)
		}
		b.WriteByte(')')
	}
	b.WriteString("])")
}

func comma(b *bytes.Buffer, i int) {
	if i > 0 {
		b.WriteByte(',')
	}
}

func strList(b *bytes.Buffer, l []string) {
	b.WriteByte('[')
	for i, s := range l {
		comma(b, i)
		str(b, s)
	}
	b.WriteByte(']')
}

// str writes s quoted the way Nix does: \ " newline CR and tab are escaped,
// every other byte is written as it is.
func str(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		b.WriteString(s[start:i])
		b.WriteString(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
