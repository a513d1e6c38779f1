package main

import (
	"strings"
	"testing"

	"privnix/ipc/msg"
)

// Every CollectGarbage request fits one frame, whatever the paths' length,
// and the chunks cover the list in order.
func TestGCChunk(t *testing.T) {
	for _, l := range []int{60, 1200} {
		var paths []string
		for i := range 1500 {
			paths = append(paths, strings.Repeat("x", l-4)+string(rune('a'+i%26))+"abc")
		}
		covered := 0
		for rest := paths; len(rest) > 0; {
			n := gcChunk(rest)
			if n < 1 || n > maxGCPathsPerRequest {
				t.Fatalf("length %d: chunk of %d", l, n)
			}
			req := &msg.CollectGarbage{Action: msg.GCDeleteSpecific, Paths: storePaths(rest[:n])}
			body, err := msg.Encode(nil, req)
			if err != nil || len(body) > msg.MaxBody {
				t.Fatalf("length %d: %d paths encode to %d bytes (%v)", l, n, len(body), err)
			}
			covered += n
			rest = rest[n:]
		}
		if covered != len(paths) {
			t.Fatalf("length %d: %d of %d paths sent", l, covered, len(paths))
		}
	}
}
