package monitor

import (
	"slices"
	"testing"

	"privnix/ipc/msg"
)

// inFrames keeps order, never exceeds the budget or the count, and always
// returns a frame (an empty answer is one empty frame).
func TestInFrames(t *testing.T) {
	if got := inFrames([]int(nil), func(int) int { return 1 }); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("no items: %v", got)
	}
	for _, size := range []int{1, 100, 3000, msg.MaxBody / 2} {
		items := make([]int, 3000)
		for i := range items {
			items[i] = i
		}
		runs := inFrames(items, func(int) int { return size })
		var all []int
		for _, r := range runs {
			if len(r) == 0 || len(r) > msg.MaxPathInfos || len(r) > 1 && len(r)*size > msg.MaxBody/2 {
				t.Fatalf("size %d: run of %d items", size, len(r))
			}
			all = append(all, r...)
		}
		if !slices.Equal(all, items) {
			t.Fatalf("size %d: runs do not add up to the items", size)
		}
	}
}

// Without a generation page (the kernel could not make one), OpenGeneration
// is refused as unsupported, which turns the frontend's cache off.
func TestOpenGenerationWithoutPage(t *testing.T) {
	s := &session{m: &Monitor{store: &storeState{}}}
	rep, err := handleOpenGeneration(s, &msg.OpenGeneration{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := rep.msgs[0].(*msg.Error)
	if len(rep.msgs) != 1 || !ok || e.Class != msg.ClassUnsupported || len(rep.fds) != 0 {
		t.Fatalf("answer %#v, fds %v", rep.msgs, rep.fds)
	}
}
