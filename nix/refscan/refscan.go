// Package refscan finds which of a set of store path hash parts occur in a byte stream, as Nix's reference scanner does.
package refscan

import "sort"

// HashLen is the length of a store path hash part in nix32 characters.
const HashLen = 32

// alphabet is nixbase32's alphabet (docs/nix-protocol.md §5.3).
const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

var isNix32 = func() (t [256]bool) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = true
	}
	return t
}()

// Scanner is an io.Writer that records the hash parts seen in what is written.
// A hash part split across Write calls is found: the last HashLen-1 bytes are
// carried over. Strings that are not 32 nix32 characters are never found.
type Scanner struct {
	want  map[string]struct{}
	found map[string]struct{}
	tail  []byte // last HashLen-1 bytes written
	join  []byte // scratch for tail + head of the next write
}

// NewScanner returns a Scanner looking for the given 32-char nix32 hash parts.
func NewScanner(hashParts []string) *Scanner {
	s := &Scanner{
		want:  make(map[string]struct{}, len(hashParts)),
		found: make(map[string]struct{}),
		tail:  make([]byte, 0, HashLen-1),
		join:  make([]byte, 0, 2*(HashLen-1)),
	}
	for _, h := range hashParts {
		s.want[h] = struct{}{}
	}
	return s
}

// Write scans p; it never fails.
func (s *Scanner) Write(p []byte) (int, error) {
	if len(s.want) == 0 {
		return len(p), nil
	}
	if len(s.tail) > 0 {
		// Matches that start in the carried tail and end in p.
		s.join = append(append(s.join[:0], s.tail...), p[:min(len(p), HashLen-1)]...)
		s.search(s.join)
	}
	s.search(p)
	s.keepTail(p)
	return len(p), nil
}

// keepTail remembers the last HashLen-1 bytes of everything written so far.
func (s *Scanner) keepTail(p []byte) {
	const keep = HashLen - 1
	if len(p) >= keep {
		s.tail = append(s.tail[:0], p[len(p)-keep:]...)
		return
	}
	s.tail = append(s.tail, p...)
	if drop := len(s.tail) - keep; drop > 0 {
		s.tail = append(s.tail[:0], s.tail[drop:]...)
	}
}

// search looks at every window of HashLen bytes, skipping past any byte
// outside the nix32 alphabet: no window containing it can match.
func (s *Scanner) search(b []byte) {
	for i := 0; i+HashLen <= len(b); {
		j := HashLen - 1
		for j >= 0 && isNix32[b[i+j]] {
			j--
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		if _, ok := s.want[string(b[i:i+HashLen])]; ok {
			h := string(b[i : i+HashLen])
			s.found[h] = struct{}{}
			delete(s.want, h)
		}
		i++
	}
}

// Found returns the hash parts seen so far, sorted.
func (s *Scanner) Found() []string {
	out := make([]string, 0, len(s.found))
	for h := range s.found {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
