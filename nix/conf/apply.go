package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// ErrUnknownSetting is wrapped by Apply's error for a name neither Nix 2.8 nor
// privnix knows. Callers reading nix.conf turn it into a warning.
var ErrUnknownSetting = errors.New("unknown setting")

// ErrInvalidValue is wrapped by Apply's error for a value the setting cannot take.
var ErrInvalidValue = errors.New("invalid value")

// Apply sets one setting as a nix.conf line `name = value` would: name may be
// an alias, and "extra-NAME" appends to a list setting.
func (s *Settings) Apply(name, value string) error {
	st, appendTo := lookup(name)
	if st == nil {
		return s.applyOther(name, value)
	}
	return assign(st.name, st.field(s), value, appendTo)
}

func lookup(name string) (*setting, bool) {
	if st, ok := index[name]; ok {
		return st, false
	}
	if base, ok := strings.CutPrefix(name, "extra-"); ok {
		if st, ok := index[base]; ok && appendable(st.field(&Settings{})) {
			return st, true
		}
	}
	return nil, false
}

func appendable(p any) bool {
	switch p.(type) {
	case *[]string, setPtr:
		return true
	}
	return false
}

func (s *Settings) applyOther(name, value string) error {
	if c, ok := Canonical(name); ok && index[c] == nil {
		if err := checkOther(c, value); err != nil {
			return err
		}
		s.setOther(c, value, false)
		return nil
	}
	if base, ok := strings.CutPrefix(name, "extra-"); ok {
		if c, ok := Canonical(base); ok && otherSettings[c] == otherList {
			s.setOther(c, value, true)
			return nil
		}
	}
	return fmt.Errorf("%w '%s'", ErrUnknownSetting, name)
}

// checkOther checks the value of an unmodelled setting as Nix would.
func checkOther(name, value string) error {
	var err error
	switch otherSettings[name] {
	case otherBool:
		var b bool
		err = parseBool(name, value, &b)
	case otherUint64:
		if _, e := parseUint(value, 64); e != nil {
			err = invalid(name, value)
		}
	case otherUint32:
		if _, e := parseUint(value, 32); e != nil {
			err = invalid(name, value)
		}
	}
	return err
}

func (s *Settings) setOther(name, value string, appendTo bool) {
	if s.Other == nil {
		s.Other = map[string]string{}
	}
	if old := s.Other[name]; appendTo && old != "" && value != "" {
		value = old + " " + value
	} else if appendTo && value == "" {
		value = old
	}
	s.Other[name] = value
}

func invalid(name, value string) error {
	return fmt.Errorf("%w: setting '%s' has invalid value '%s'", ErrInvalidValue, name, value)
}

// assign parses value into the field p of setting name.
func assign(name string, p any, value string, appendTo bool) error {
	switch p := p.(type) {
	case *bool:
		return parseBool(name, value, p)
	case *string:
		*p = value
	case *[]string:
		if !appendTo {
			*p = nil
		}
		*p = append(*p, strings.Fields(value)...)
		if *p == nil {
			*p = []string{}
		}
	case setPtr:
		if !appendTo {
			*p.p = nil
		}
		*p.p = normSet(append(*p.p, strings.Fields(value)...))
	case *int64:
		n, err := strconv.ParseInt(strings.TrimPrefix(value, "+"), 10, 64)
		if err != nil || !numeric(value) {
			return invalid(name, value)
		}
		*p = n
	case *uint64:
		n, err := parseUint(value, 64)
		if err != nil {
			return invalid(name, value)
		}
		*p = n
	case *uint32:
		n, err := parseUint(value, 32)
		if err != nil {
			return invalid(name, value)
		}
		*p = uint32(n)
	case maxJobsPtr:
		return parseMaxJobs(name, value, p)
	case *SandboxMode:
		return parseSandbox(name, value, p)
	case *UIDRange:
		r, err := ParseUIDRange(value)
		if err != nil {
			return fmt.Errorf("%w: setting '%s': %v", ErrInvalidValue, name, err)
		}
		*p = r
	default:
		panic(fmt.Sprintf("conf: setting %s has an unhandled field type %T", name, p))
	}
	return nil
}

// numeric reports whether v is an optional sign followed by decimal digits only.
func numeric(v string) bool {
	if v != "" && (v[0] == '+' || v[0] == '-') {
		v = v[1:]
	}
	if v == "" {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parseUint(v string, bits int) (uint64, error) {
	if !numeric(v) || v[0] == '-' {
		return 0, ErrInvalidValue
	}
	return strconv.ParseUint(strings.TrimPrefix(v, "+"), 10, bits)
}

func parseBool(name, v string, p *bool) error {
	switch v {
	case "true", "yes", "1":
		*p = true
	case "false", "no", "0":
		*p = false
	default:
		return fmt.Errorf("%w: Boolean setting '%s' has invalid value '%s'", ErrInvalidValue, name, v)
	}
	return nil
}

func parseMaxJobs(name, v string, p maxJobsPtr) error {
	if v == "auto" {
		*p.p = uint32(max(1, p.cpus))
		return nil
	}
	n, err := parseUint(v, 32)
	if err != nil {
		return fmt.Errorf("%w: configuration setting '%s' should be 'auto' or an integer", ErrInvalidValue, name)
	}
	*p.p = uint32(n)
	return nil
}

func parseSandbox(name, v string, p *SandboxMode) error {
	switch v {
	case "true":
		*p = SandboxOn
	case "false":
		*p = SandboxOff
	case "relaxed":
		*p = SandboxRelaxed
	default:
		return fmt.Errorf("%w: option '%s' has invalid value '%s'", ErrInvalidValue, name, v)
	}
	return nil
}

// ParseUIDRange parses "LO-HI" (decimal, inclusive, LO <= HI, LO > 0).
func ParseUIDRange(v string) (UIDRange, error) {
	lo, hi, ok := strings.Cut(v, "-")
	if !ok {
		return UIDRange{}, fmt.Errorf("id range '%s' is not of the form LO-HI", v)
	}
	l, err1 := parseUint(lo, 32)
	h, err2 := parseUint(hi, 32)
	if err1 != nil || err2 != nil {
		return UIDRange{}, fmt.Errorf("id range '%s' must be two decimal numbers below 2^32", v)
	}
	if l == 0 || l > h {
		return UIDRange{}, fmt.Errorf("id range '%s' must satisfy 0 < LO <= HI", v)
	}
	return UIDRange{uint32(l), uint32(h)}, nil
}

// ApplyLines applies parsed lines in order. Unknown names become warnings
// ("file:line: unknown setting 'x'"); a bad value is an error naming file:line.
func (s *Settings) ApplyLines(lines []Line) (warnings []string, err error) {
	for _, l := range lines {
		err := s.Apply(l.Name, l.Value)
		if errors.Is(err, ErrUnknownSetting) {
			warnings = append(warnings, fmt.Sprintf("%s: %v", l.Where(), err))
		} else if err != nil {
			return warnings, fmt.Errorf("%s: %w", l.Where(), err)
		}
	}
	return warnings, nil
}

// Load reads the configuration file (and its includes) through read and
// returns Defaults(h) with it applied, plus warnings about unknown settings.
// A missing file means "all defaults", as in Nix.
func Load(file string, read ReadFunc, h Host) (*Settings, []string, error) {
	return LoadAll([]string{file}, read, h)
}

// Get renders a setting's current value as `nix show-config` prints it. name
// may be an alias. Unmodelled Nix settings are returned only when set.
func (s *Settings) Get(name string) (string, bool) {
	st, ok := index[name]
	if !ok {
		c, ok := Canonical(name)
		if !ok {
			return "", false
		}
		v, ok := s.Other[c]
		return v, ok
	}
	return render(st.field(s)), true
}

func render(p any) string {
	switch p := p.(type) {
	case *bool:
		return strconv.FormatBool(*p)
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, " ")
	case setPtr:
		return strings.Join(*p.p, " ")
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *uint64:
		return strconv.FormatUint(*p, 10)
	case *uint32:
		return strconv.FormatUint(uint64(*p), 10)
	case maxJobsPtr:
		return strconv.FormatUint(uint64(*p.p), 10)
	case fmt.Stringer:
		return p.String()
	}
	panic(fmt.Sprintf("conf: cannot render %T", p))
}

// LoadAll is Load over several files applied in order (e.g. nix.conf, then a
// privnix-only file that Nix clients do not read, so they do not warn about
// privnix's settings). Missing files are skipped.
func LoadAll(files []string, read ReadFunc, h Host) (*Settings, []string, error) {
	s := Defaults(h)
	var warnings []string
	for _, f := range files {
		lines, err := Parse(f, read)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, warnings, err
		}
		w, err := s.ApplyLines(lines)
		warnings = append(warnings, w...)
		if err != nil {
			return nil, warnings, err
		}
	}
	if err := s.Validate(); err != nil {
		return nil, warnings, err
	}
	return s, warnings, nil
}
