package msg

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxBody is the largest msgpack body of one message, in bytes. It is checked
// before anything is decoded. ipc.MaxFrame is the same number.
const MaxBody = 128 << 10

// MaxFds is the largest number of file descriptors one message may carry.
const MaxFds = 4

// Kind names a message type. Requests are even, answers odd; every kind is
// unique across all channels.
type Kind uint16

// IsAnswer reports whether k is an answer kind (odd).
func (k Kind) IsAnswer() bool { return k&1 == 1 }

func (k Kind) String() string {
	if s, ok := registry[k]; ok {
		return s.Name
	}
	return fmt.Sprintf("Kind(%#04x)", uint16(k))
}

// Message is implemented by every message struct (with value receivers, so
// both T and *T are Messages; Decode always returns *T).
type Message interface {
	Kind() Kind
	// Validate checks every field's length, range and content. It is called
	// on both sides: a sender refuses to send an invalid message and a
	// receiver treats one as a protocol violation.
	Validate() error
}

// Spec describes one kind: its number, its Go name, a constructor for its
// decoding target and the exact number of fds that travel with it.
type Spec struct {
	Kind Kind
	Name string
	New  func() Message
	Fds  int
}

// row builds a registry row for the message type T; fds is the exact number
// of file descriptors that travel with it.
func row[T any, PT interface {
	*T
	Message
}](fds int) Spec {
	return Spec{
		Kind: PT(new(T)).Kind(),
		Name: reflect.TypeFor[T]().Name(),
		New:  func() Message { return PT(new(T)) },
		Fds:  fds,
	}
}

// channels lists every per-channel table; the registry is built from it.
var channels = [][]Spec{
	commonTable,
	logTable,
	frontendTable,
	batchTable,
	sessionTable,
	rootsTable,
	optionsTable,
	gcTable,
	maintTable,
	storeTable,
	buildTable,
	drvTable,
	adminTable,
	fetchTable,
	substTable,
	inlineTable,
}

var registry = buildRegistry(channels)

func buildRegistry(tables [][]Spec) map[Kind]Spec {
	reg := make(map[Kind]Spec)
	for _, t := range tables {
		for _, s := range t {
			if _, dup := reg[s.Kind]; dup {
				panic(fmt.Sprintf("msg: kind %#04x registered twice", uint16(s.Kind)))
			}
			if s.Fds < 0 || s.Fds > MaxFds {
				panic(fmt.Sprintf("msg: %s: fd count %d out of range", s.Name, s.Fds))
			}
			if k := s.New().Kind(); k != s.Kind {
				panic(fmt.Sprintf("msg: %s: New().Kind() = %#04x, want %#04x", s.Name, uint16(k), uint16(s.Kind)))
			}
			reg[s.Kind] = s
		}
	}
	return reg
}

// Lookup returns the spec of kind k.
func Lookup(k Kind) (Spec, bool) {
	s, ok := registry[k]
	return s, ok
}

// Specs returns every registered spec, sorted by kind.
func Specs() []Spec {
	out := make([]Spec, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// Errors returned by Decode and Encode. Package ipc wraps every decode error
// as ipc.ErrViolation.
var (
	ErrUnknownKind = errors.New("msg: unknown kind")
	ErrTooLarge    = errors.New("msg: body larger than MaxBody")
	ErrMalformed   = errors.New("msg: malformed body")
)

// Encode appends the msgpack body of m to dst. It does not validate m.
func Encode(dst []byte, m Message) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(m); err != nil {
		return dst, fmt.Errorf("msg: encoding %s: %w", m.Kind(), err)
	}
	return buf.Bytes(), nil
}

// Decode decodes and validates the body of a message of kind k. Every error
// means the peer broke the protocol.
func Decode(k Kind, body []byte) (Message, error) {
	spec, ok := registry[k]
	if !ok {
		return nil, fmt.Errorf("%w %#04x", ErrUnknownKind, uint16(k))
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%s: %w (%d bytes)", spec.Name, ErrTooLarge, len(body))
	}
	m := spec.New()
	rest, err := checkShape(body, reflect.TypeOf(m).Elem(), 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%s: %w: %d trailing bytes", spec.Name, ErrMalformed, len(rest))
	}
	r := bytes.NewReader(body)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r) // Reset also clears every flag.
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", spec.Name, ErrMalformed, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%s: %w: %d trailing bytes", spec.Name, ErrMalformed, r.Len())
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: invalid: %w", spec.Name, err)
	}
	return m, nil
}
