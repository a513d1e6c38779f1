package main

import (
	"context"
	"fmt"

	"privnix/frontend"
	"privnix/frontend/wire"
	"privnix/ipc/msg"
)

// VerifyStore asks the monitor to check the store and prints its findings
// as nix-daemon 2.8 does: progress lines at the info level, findings at the
// error level, "cannot repair path …" as an error message (after a modified
// path) or a warning (after a vanished one with referrers). The
// monitor answers when it is done, so the lines arrive together.
func (b *backend) VerifyStore(ctx context.Context, checkContents, repair bool) (bool, error) {
	log := frontend.LoggerFrom(ctx)
	log.Log(wire.LvlInfo, "reading the Nix store...")
	log.Log(wire.LvlInfo, "checking path existence...")
	findings, errors, err := b.verify(&msg.VerifyStore{CheckContents: checkContents, Repair: repair})
	if err != nil {
		return false, err
	}
	phase := 0 // 0 existence, 1 links, 2 contents
	enter := func(p int) {
		for ; phase < p; phase++ {
			log.Log(wire.LvlInfo, []string{"checking link hashes...", "checking store hashes..."}[phase])
		}
	}
	var prev uint64
	for _, f := range findings {
		what := f.What
		if what == msg.FoundCannotRepair && prev == msg.FoundVanishedReferred {
			what = 0 // Nix logs this one as a warning
			log.Warn(fmt.Sprintf("cannot repair path '%s'", f.Path))
		}
		if f.What != msg.FoundWarning && f.What != msg.FoundSubstituting {
			prev = f.What // a failed repair's warnings come between
		}
		switch what {
		case msg.FoundVanished:
			log.Log(wire.LvlInfo, fmt.Sprintf("path '%s' disappeared, removing from database...", f.Path))
		case msg.FoundVanishedReferred:
			log.Log(wire.LvlError, fmt.Sprintf("path '%s' disappeared, but it still has valid referrers!", f.Path))
		case msg.FoundLinkModified:
			enter(1)
			log.Log(wire.LvlError, fmt.Sprintf("link '%s/.links/%s' was modified! expected hash '%s', got '%s'", b.storeDir, f.Link, f.Link, f.Got))
		case msg.FoundLinkRemoved:
			enter(1)
			log.Log(wire.LvlInfo, fmt.Sprintf("removed link '%s/.links/%s'", b.storeDir, f.Link))
		case msg.FoundModified:
			enter(2)
			log.Log(wire.LvlError, fmt.Sprintf("path '%s' was modified! expected hash '%s', got '%s'", f.Path, f.Expected, f.Got))
		case msg.FoundCannotRepair:
			enter(2)
			log.Log(wire.LvlError, fmt.Sprintf("\x1b[31;1merror:\x1b[0m cannot repair path '%s'", f.Path))
		case msg.FoundSubstituting:
			log.Log(wire.LvlInfo, f.Got)
		case msg.FoundWarning:
			log.Warn(f.Got)
		case msg.FoundUnreadable:
			enter(2)
			log.Log(wire.LvlError, fmt.Sprintf("\x1b[31;1merror:\x1b[0m reading '%s': %s", f.Path, f.Got))
		}
	}
	if checkContents {
		enter(2)
	}
	return errors, nil
}

// verify sends one VerifyStore and gathers every Verified frame.
func (b *backend) verify(req *msg.VerifyStore) ([]msg.Finding, bool, error) {
	var out []msg.Finding
	errors := false
	err := b.callFrames(req, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.Verified)
		if !ok {
			return false, fmt.Errorf("monitor answered VerifyStore with %v", ans.Kind())
		}
		out = append(out, a.Findings...)
		errors = a.Errors
		return a.More, nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, errors, nil
}

// OptimiseStore asks the monitor to hard-link identical files and prints
// nix-daemon's summary line.
func (b *backend) OptimiseStore(ctx context.Context) error {
	ans, fds, err := b.call(&msg.OptimiseStore{})
	closeAll(fds)
	if err != nil {
		return err
	}
	o, ok := ans.(*msg.Optimised)
	if !ok {
		return fmt.Errorf("monitor answered OptimiseStore with %v", ans.Kind())
	}
	frontend.LoggerFrom(ctx).Log(wire.LvlInfo, fmt.Sprintf("%.2f MiB freed by hard-linking %d files", float64(o.BytesFreed)/(1024*1024), o.FilesLinked))
	return nil
}
