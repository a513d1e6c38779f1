package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Structured attributes (__json, nix-protocol.md 6.10): the builder gets
// .attrs.json, the derivation's JSON with "outputs" added, and .attrs.sh,
// a bash declare line for each top-level key that bash can hold. The JSON
// is re-printed as Nix 2.8's nlohmann::json dump does: keys sorted, no
// spaces, strings escaped only where JSON requires.

var shVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// structuredAttrs returns the contents of .attrs.json and .attrs.sh.
func structuredAttrs(js string, outputs map[string]string) (string, string, error) {
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return "", "", fmt.Errorf("the structured attributes are not a JSON object: %v", err)
	}
	outs := map[string]any{}
	for n, p := range outputs {
		outs[n] = p
	}
	top["outputs"] = outs
	var b bytes.Buffer
	dumpJSON(&b, top)
	var sh strings.Builder
	keys := sortedKeys(top)
	for _, k := range keys {
		if !shVarName.MatchString(k) {
			continue
		}
		v := top[k]
		if s, ok := shSimple(v); ok {
			fmt.Fprintf(&sh, "declare %s=%s\n", k, s)
			continue
		}
		switch v := v.(type) {
		case []any:
			var s2 strings.Builder
			good := true
			for _, e := range v {
				s3, ok := shSimple(e)
				if !ok {
					good = false
					break
				}
				s2.WriteString(s3 + " ")
			}
			if good {
				fmt.Fprintf(&sh, "declare -a %s=(%s)\n", k, s2.String())
			}
		case map[string]any:
			var s2 strings.Builder
			good := true
			for _, k2 := range sortedKeys(v) {
				s3, ok := shSimple(v[k2])
				if !ok {
					good = false
					break
				}
				fmt.Fprintf(&s2, "[%s]=%s ", shellEscape(k2), s3)
			}
			if good {
				fmt.Fprintf(&sh, "declare -A %s=(%s)\n", k, s2.String())
			}
		}
	}
	return b.String(), sh.String(), nil
}

// shSimple is Nix's handleSimpleType: strings, integral numbers, null and
// booleans as bash words.
func shSimple(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return shellEscape(v), true
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 32)
		if err == nil && math.Ceil(f) == f {
			i, err := strconv.ParseInt(string(v), 10, 32)
			if err != nil {
				i = int64(int32(f))
			}
			return strconv.FormatInt(i, 10), true
		}
		return "", false
	case nil:
		return "''", true
	case bool:
		if v {
			return "1", true
		}
		return "", true
	}
	return "", false
}

func shellEscape(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// dumpJSON writes v as nlohmann::json's dump() (no indentation).
func dumpJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(string(v))
	case string:
		dumpString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpJSON(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpString(b, k)
			b.WriteByte(':')
			dumpJSON(b, v[k])
		}
		b.WriteByte('}')
	}
}

func dumpString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}
