package msg

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sync"
)

// maxDepth bounds the nesting of arrays in a body (a message holding a list of
// structs holding a list is depth 3).
const maxDepth = 8

// checkShape walks the msgpack value at the start of b along the Go type t and
// returns what follows it. It allocates nothing, so that everything the
// decoder allocates afterwards is paid for by bytes present in the frame, and
// it is stricter than msgpack/v5, which:
//   - decodes an empty array into any as_array struct (the zero value);
//   - decodes a map into an as_array struct, by field name;
//   - narrows integers silently (1000 into a uint8 gives 232, -1 into a
//     uint64 gives 2^64-1) and converts floats to integers;
//   - decodes nil into strings, bools and integers as the zero value.
//
// Here a struct must be an array of exactly its field count; a string a str;
// a bool a bool; an integer an integer code whose value fits the field's Go
// type; a slice an array (or nil) whose count fits in the bytes left; []byte a
// bin, str or nil. Every other Go kind (maps, floats, interfaces, pointers)
// and every other msgpack code (maps, floats, extensions) is refused.
func checkShape(b []byte, t reflect.Type, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: truncated at %s", ErrMalformed, t)
	}
	c := b[0]
	switch t.Kind() {
	case reflect.Struct:
		n, rest, err := arrayHeader(b, false)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, t)
		}
		fields, err := wireFields(t)
		if err != nil {
			return nil, err
		}
		if len(fields) != n {
			return nil, fmt.Errorf("%w: %s has %d fields, array has %d", ErrMalformed, t, len(fields), n)
		}
		for _, ft := range fields {
			if rest, err = checkShape(rest, ft, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil

	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // []byte
			if c == 0xc0 {
				return b[1:], nil
			}
			if c >= 0xa0 && c <= 0xbf || c == 0xd9 || c == 0xda || c == 0xdb {
				return skipBytes(b, t)
			}
			if c == 0xc4 || c == 0xc5 || c == 0xc6 {
				return skipBytes(b, t)
			}
			return nil, codeErr(c, t)
		}
		n, rest, err := arrayHeader(b, true)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, t)
		}
		for i := 0; i < n; i++ {
			if rest, err = checkShape(rest, t.Elem(), depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil

	case reflect.String:
		if c >= 0xa0 && c <= 0xbf || c == 0xd9 || c == 0xda || c == 0xdb {
			return skipBytes(b, t)
		}
		return nil, codeErr(c, t)

	case reflect.Bool:
		if c == 0xc2 || c == 0xc3 {
			return b[1:], nil
		}
		return nil, codeErr(c, t)

	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		neg, v, rest, err := integer(b, t)
		if err != nil {
			return nil, err
		}
		if neg || v > math.MaxUint64>>(64-t.Bits()) {
			return nil, fmt.Errorf("%w: integer out of range for %s", ErrMalformed, t)
		}
		return rest, nil

	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		neg, v, rest, err := integer(b, t)
		if err != nil {
			return nil, err
		}
		max := uint64(1)<<(t.Bits()-1) - 1
		if !neg && v > max || neg && int64(v) < -int64(max)-1 {
			return nil, fmt.Errorf("%w: integer out of range for %s", ErrMalformed, t)
		}
		return rest, nil
	}
	return nil, fmt.Errorf("%w: Go type %s not allowed in messages", ErrMalformed, t)
}

// wireFieldsOf caches wireFields' answers.
var wireFieldsOf sync.Map // reflect.Type → []reflect.Type or error

// wireFields returns the types of the fields of struct type t that are on the
// wire (exported, not tagged "-"), in order; an embedded field is an error.
func wireFields(t reflect.Type) ([]reflect.Type, error) {
	if v, ok := wireFieldsOf.Load(t); ok {
		if err, bad := v.(error); bad {
			return nil, err
		}
		return v.([]reflect.Type), nil
	}
	var fields []reflect.Type
	var err error
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("msgpack") == "-" {
			continue
		}
		if f.Anonymous {
			err = fmt.Errorf("%w: %s embeds %s", ErrMalformed, t, f.Name)
			break
		}
		fields = append(fields, f.Type)
	}
	if err != nil {
		wireFieldsOf.Store(t, err)
		return nil, err
	}
	wireFieldsOf.Store(t, fields)
	return fields, nil
}

func codeErr(c byte, t reflect.Type) error {
	return fmt.Errorf("%w: msgpack code %#02x for %s", ErrMalformed, c, t)
}

// arrayHeader reads an array header (or nil, if nilOK, as 0 elements) and
// checks that the count fits in the bytes that follow.
func arrayHeader(b []byte, nilOK bool) (int, []byte, error) {
	c := b[0]
	var n uint64
	switch {
	case c >= 0x90 && c <= 0x9f:
		n, b = uint64(c&0x0f), b[1:]
	case c == 0xdc && len(b) >= 3:
		n, b = uint64(binary.BigEndian.Uint16(b[1:])), b[3:]
	case c == 0xdd && len(b) >= 5:
		n, b = uint64(binary.BigEndian.Uint32(b[1:])), b[5:]
	case c == 0xc0 && nilOK:
		return 0, b[1:], nil
	default:
		return 0, nil, fmt.Errorf("%w: msgpack code %#02x where an array is expected", ErrMalformed, c)
	}
	if n > uint64(len(b)) { // every element takes at least one byte
		return 0, nil, fmt.Errorf("%w: array of %d elements in %d bytes", ErrMalformed, n, len(b))
	}
	return int(n), b, nil
}

// skipBytes skips a str or bin whose code has been checked.
func skipBytes(b []byte, t reflect.Type) ([]byte, error) {
	c := b[0]
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, b = uint64(c&0x1f), b[1:]
	case (c == 0xd9 || c == 0xc4) && len(b) >= 2:
		n, b = uint64(b[1]), b[2:]
	case (c == 0xda || c == 0xc5) && len(b) >= 3:
		n, b = uint64(binary.BigEndian.Uint16(b[1:])), b[3:]
	case (c == 0xdb || c == 0xc6) && len(b) >= 5:
		n, b = uint64(binary.BigEndian.Uint32(b[1:])), b[5:]
	default:
		return nil, fmt.Errorf("%w: truncated length for %s", ErrMalformed, t)
	}
	if n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d bytes for %s, %d left", ErrMalformed, n, t, len(b))
	}
	return b[n:], nil
}

// integer reads any msgpack integer: its sign and magnitude (v is the two's
// complement value when neg).
func integer(b []byte, t reflect.Type) (neg bool, v uint64, rest []byte, err error) {
	c := b[0]
	size := 0
	switch {
	case c <= 0x7f:
		return false, uint64(c), b[1:], nil
	case c >= 0xe0:
		return true, uint64(int64(int8(c))), b[1:], nil
	case c == 0xcc || c == 0xd0:
		size = 1
	case c == 0xcd || c == 0xd1:
		size = 2
	case c == 0xce || c == 0xd2:
		size = 4
	case c == 0xcf || c == 0xd3:
		size = 8
	default:
		return false, 0, nil, codeErr(c, t)
	}
	if len(b) < 1+size {
		return false, 0, nil, fmt.Errorf("%w: truncated integer for %s", ErrMalformed, t)
	}
	p := b[1 : 1+size]
	var u uint64
	for _, x := range p {
		u = u<<8 | uint64(x)
	}
	if c >= 0xd0 { // signed: sign-extend
		shift := 64 - 8*size
		s := int64(u<<shift) >> shift
		return s < 0, uint64(s), b[1+size:], nil
	}
	return false, u, b[1+size:], nil
}
