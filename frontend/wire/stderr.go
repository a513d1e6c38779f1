package wire

import "fmt"

// Messages of the stderr channel (§3.1): the daemon's side of every operation.
const (
	StderrNext          = 0x6f6c6d67 // str text
	StderrRead          = 0x64617461 // u64 maxLen; the client answers with one str
	StderrWrite         = 0x64617416 // str data
	StderrLast          = 0x616c7473 // success; the result follows
	StderrError         = 0x63787470 // error (§3.2); no result follows
	StderrStartActivity = 0x53545254
	StderrStopActivity  = 0x53544f50
	StderrResult        = 0x52534c54
)

// Verbosity levels (§3.3).
const (
	LvlError uint64 = iota
	LvlWarn
	LvlNotice
	LvlInfo
	LvlTalkative
	LvlChatty
	LvlDebug
	LvlVomit
)

// Field is one activity or result field: an integer or a string.
type Field struct {
	IsString bool
	Int      uint64
	Str      string
}

// IntField returns an integer field.
func IntField(v uint64) Field { return Field{Int: v} }

// StringField returns a string field.
func StringField(s string) Field { return Field{IsString: true, Str: s} }

// Activity is the payload of STDERR_START_ACTIVITY.
type Activity struct {
	ID, Level, Type uint64
	Text            string
	Fields          []Field
	Parent          uint64
}

// ErrorInfo is the payload of STDERR_ERROR. Status is only sent to clients before 1.26.
type ErrorInfo struct {
	Level   uint64
	Message string
	Traces  []string
	Status  uint64
}

// StderrNext writes a log line.
func (w *Writer) StderrNext(text string) {
	w.U64(StderrNext)
	w.String(text)
}

// StderrRead asks the client for up to n bytes of input (§1.5); it answers with one string.
func (w *Writer) StderrRead(n uint64) {
	w.U64(StderrRead)
	w.U64(n)
}

// StderrWrite pushes data to the client's sink.
func (w *Writer) StderrWrite(data []byte) {
	w.U64(StderrWrite)
	w.Bytes(data)
}

// StderrLast ends an operation successfully.
func (w *Writer) StderrLast() { w.U64(StderrLast) }

// StderrError ends an operation with an error in the form the client version understands.
func (w *Writer) StderrError(v Version, e ErrorInfo) {
	w.U64(StderrError)
	if !v.AtLeast(26) {
		w.String(e.Message)
		w.U64(e.Status)
		return
	}
	w.String("Error")
	w.U64(e.Level)
	w.String("Error")
	w.String(e.Message)
	w.U64(0) // no position
	w.U64(uint64(len(e.Traces)))
	for _, t := range e.Traces {
		w.U64(0)
		w.String(t)
	}
}

// StartActivity writes STDERR_START_ACTIVITY.
func (w *Writer) StartActivity(a Activity) {
	w.U64(StderrStartActivity)
	w.U64(a.ID)
	w.U64(a.Level)
	w.U64(a.Type)
	w.String(a.Text)
	w.fields(a.Fields)
	w.U64(a.Parent)
}

// StopActivity writes STDERR_STOP_ACTIVITY.
func (w *Writer) StopActivity(id uint64) {
	w.U64(StderrStopActivity)
	w.U64(id)
}

// Result writes STDERR_RESULT.
func (w *Writer) Result(id, typ uint64, fields []Field) {
	w.U64(StderrResult)
	w.U64(id)
	w.U64(typ)
	w.fields(fields)
}

func (w *Writer) fields(fs []Field) {
	w.U64(uint64(len(fs)))
	for _, f := range fs {
		if f.IsString {
			w.U64(1)
			w.String(f.Str)
		} else {
			w.U64(0)
			w.U64(f.Int)
		}
	}
}

// StderrMsg is one decoded stderr message (the client's view; used by tests and tools).
type StderrMsg struct {
	Kind     uint64
	Text     string // NEXT text, WRITE data
	N        uint64 // READ length, STOP_ACTIVITY id, RESULT id
	Err      ErrorInfo
	Activity Activity
	Type     uint64 // RESULT type
	Fields   []Field
}

// StderrMessage reads one stderr message as a client of version v would.
func (r *Reader) StderrMessage(v Version) (StderrMsg, error) {
	m := StderrMsg{}
	var err error
	if m.Kind, err = r.U64(); err != nil {
		return m, err
	}
	switch m.Kind {
	case StderrNext, StderrWrite:
		m.Text, err = r.String(MaxTextLen, "stderr text")
	case StderrRead, StderrStopActivity:
		m.N, err = r.U64()
	case StderrLast:
	case StderrError:
		m.Err, err = r.errorInfo(v)
	case StderrStartActivity:
		m.Activity, err = r.activity()
	case StderrResult:
		if m.N, err = r.U64(); err == nil {
			if m.Type, err = r.U64(); err == nil {
				m.Fields, err = r.fields()
			}
		}
	default:
		err = protoErr("unknown stderr message 0x%x", m.Kind)
	}
	return m, err
}

func (r *Reader) errorInfo(v Version) (ErrorInfo, error) {
	var e ErrorInfo
	var err error
	if !v.AtLeast(26) {
		if e.Message, err = r.String(MaxTextLen, "error message"); err != nil {
			return e, err
		}
		e.Status, err = r.U64()
		return e, err
	}
	if err = r.tag("Error"); err != nil {
		return e, err
	}
	if e.Level, err = r.Uint(LvlVomit, "error level"); err != nil {
		return e, err
	}
	if _, err = r.String(MaxSmallString, "error name"); err != nil {
		return e, err
	}
	if e.Message, err = r.String(MaxTextLen, "error message"); err != nil {
		return e, err
	}
	if err = r.noPosition(); err != nil {
		return e, err
	}
	n, err := r.count(MaxSmallString, "error traces")
	for i := 0; i < n && err == nil; i++ {
		var t string
		if err = r.noPosition(); err == nil {
			t, err = r.String(MaxTextLen, "error trace")
			e.Traces = append(e.Traces, t)
		}
	}
	return e, err
}

func (r *Reader) tag(want string) error {
	s, err := r.String(len(want)+8, "error type")
	if err == nil && s != want {
		err = protoErr("error type %q is not %q", s, want)
	}
	return err
}

func (r *Reader) noPosition() error {
	p, err := r.U64()
	if err == nil && p != 0 {
		err = protoErr("error with a position (%d) is not supported", p)
	}
	return err
}

func (r *Reader) activity() (Activity, error) {
	var a Activity
	var err error
	for _, p := range []*uint64{&a.ID, &a.Level, &a.Type} {
		if *p, err = r.U64(); err != nil {
			return a, err
		}
	}
	if a.Text, err = r.String(MaxTextLen, "activity text"); err != nil {
		return a, err
	}
	if a.Fields, err = r.fields(); err != nil {
		return a, err
	}
	a.Parent, err = r.U64()
	return a, err
}

func (r *Reader) fields() ([]Field, error) {
	n, err := r.count(MaxSmallString, "fields")
	if err != nil {
		return nil, err
	}
	fs := make([]Field, 0, min(n, 64))
	for range n {
		kind, err := r.U64()
		if err != nil {
			return nil, err
		}
		var f Field
		switch kind {
		case 0:
			f.Int, err = r.U64()
		case 1:
			f.IsString = true
			f.Str, err = r.String(MaxTextLen, "field")
		default:
			err = protoErr("field kind %d is neither 0 (int) nor 1 (string)", kind)
		}
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// String describes the message for test failures and logs.
func (m StderrMsg) String() string {
	switch m.Kind {
	case StderrNext:
		return fmt.Sprintf("NEXT %q", m.Text)
	case StderrLast:
		return "LAST"
	case StderrError:
		return fmt.Sprintf("ERROR %q (status %d)", m.Err.Message, m.Err.Status)
	}
	return fmt.Sprintf("stderr message 0x%x", m.Kind)
}
