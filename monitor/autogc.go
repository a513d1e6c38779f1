package monitor

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"privnix/monitor/gc"
	"privnix/nix/conf"
)

// Automatic collection (Nix's auto-GC, §6.7; min-free and max-free in
// nix.conf, off while min-free is 0): before an upload or a build, at most
// every min-free-check-interval seconds (5), if the store's filesystem has
// less than min-free bytes available, dead paths are collected until
// max-free bytes are, and the request waits for that, as with nix-daemon.
// A request arriving meanwhile waits for the same collection. As in Nix, a
// collection is not started again while the space available is still above
// 97 % of what the last one left (it could not free more).
type autoGC struct {
	mu         sync.Mutex
	lastCheck  time.Time     // guarded by mu
	availAfter uint64        // bytes available after the last auto-GC; guarded by mu
	done       chan struct{} // closed when the running auto-GC ends; nil if none; guarded by mu
}

// autoCollect is the check before an upload or a build; it returns at once
// unless a collection runs or must run.
func (m *Monitor) autoCollect(set *conf.Settings) {
	if set.MinFree == 0 {
		return
	}
	a := &m.auto
	a.mu.Lock()
	if a.done == nil {
		interval := 5 * time.Second
		if v, err := strconv.ParseUint(set.Other["min-free-check-interval"], 10, 32); err == nil {
			interval = time.Duration(v) * time.Second
		}
		if time.Since(a.lastCheck) < interval {
			a.mu.Unlock()
			return
		}
		a.lastCheck = time.Now()
		avail, err := availableBytes(string(m.store.dir))
		if a.availAfter == 0 {
			a.availAfter = math.MaxUint64
		}
		if err != nil || avail >= set.MinFree || avail >= set.MaxFree || float64(avail) > float64(a.availAfter)*0.97 {
			a.mu.Unlock()
			return
		}
		a.done = make(chan struct{})
		go m.runAutoGC(set, set.MaxFree-avail, a.done)
	}
	done := a.done
	a.mu.Unlock()
	<-done
}

func (m *Monitor) runAutoGC(set *conf.Settings, maxFreed uint64, done chan struct{}) {
	a := &m.auto
	m.log.Info("running auto-GC", "to_free", maxFreed)
	m.roots.collecting.Lock()
	res, _, err := m.collect(m.audit.With("auto_gc", true), set, gc.DeleteDead, nil, maxFreed)
	m.roots.collecting.Unlock()
	if err != nil {
		m.log.Error("auto-GC", "err", err)
	}
	avail, _ := availableBytes(string(m.store.dir))
	m.log.Info("auto-GC ended", "paths", len(res.Paths), "bytes_freed", res.BytesFreed, "available", avail)
	a.mu.Lock()
	a.availAfter, a.lastCheck, a.done = avail, time.Now(), nil
	a.mu.Unlock()
	close(done)
}

// availableBytes is what an unprivileged user may still write on the
// filesystem holding dir (statfs f_bavail × f_frsize, as Nix).
func availableBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Frsize), nil
}
