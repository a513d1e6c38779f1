package main

import (
	"fmt"
	"slices"
	"sync"

	"privnix/frontend/wire"
	"privnix/ipc/genpage"
	"privnix/ipc/msg"
)

// The connection's cache of read-only answers (validity and path infos).
// An answer is kept with the store generation (ipc/genpage) read before it
// was asked, and used only while the generation has not moved: the monitor
// bumps it after every database commit, before the write returns, so a
// cached answer is never older than the last write any client saw complete.
// The page is opened at the connection's second cacheable query, so a
// one-query connection pays nothing for it.
//
// The cache also fetches ahead when the client walks: asked for a path that
// is a reference of a path it already holds (a closure being computed), it
// asks the monitor for that path's closure, prefetch paths at a time; asked
// for a path of the last list of paths the client got (QueryAllValidPaths,
// QueryValidPaths), it asks for the next prefetch paths of that list.
type cache struct {
	mu     sync.Mutex
	view   *genpage.View // nil until opened
	asked  int           // cacheable queries so far
	failed bool          // the page could not be opened: no caching

	gen   uint64                                // the generation the answers below belong to
	valid map[string]bool                       // IsValidPath answers
	infos map[string]*wire.UnkeyedValidPathInfo // QueryPathInfo answers; nil = not valid
	refs  map[string]bool                       // references of the infos held
	rdrs  map[string][]string                   // QueryReferrers answers
	back  map[string]bool                       // referrers held (a referrers closure asks these next)

	list []string       // the last list of paths the client got (a hint, kept across generations)
	pos  map[string]int // index in list
}

const (
	prefetch   = 256     // infos fetched ahead per monitor request
	maxEntries = 1 << 13 // the cache is emptied rather than grown past this (a few MiB)
	maxHint    = 1 << 17 // longest list kept as a hint
)

// current returns the generation to tag a new answer with, dropping answers
// of an older one; ok is false when this connection does not cache.
func (b *backend) current() (gen uint64, ok bool) {
	c := &b.cache
	c.mu.Lock()
	c.asked++
	open := c.view == nil && !c.failed && c.asked >= 2
	c.mu.Unlock()
	if open {
		b.openGeneration()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view == nil {
		return 0, false
	}
	if g := c.view.Load(); g != c.gen || len(c.infos)+len(c.valid)+len(c.rdrs) > maxEntries {
		c.gen = g
		c.valid = map[string]bool{}
		c.infos = map[string]*wire.UnkeyedValidPathInfo{}
		c.refs = map[string]bool{}
		c.rdrs = map[string][]string{}
		c.back = map[string]bool{}
	}
	return c.gen, true
}

// openGeneration maps the monitor's generation page; a failure turns
// caching off for the connection.
func (b *backend) openGeneration() {
	var view *genpage.View
	ans, fds, err := b.call(&msg.OpenGeneration{})
	if err == nil {
		if _, ok := ans.(*msg.Generation); !ok || len(fds) != 1 {
			err = fmt.Errorf("monitor answered OpenGeneration with %v", ans.Kind())
		} else {
			view, err = genpage.Map(fds[0])
		}
	}
	closeAll(fds)
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	b.cache.view, b.cache.failed = view, err != nil
}

// lookupValid answers IsValidPath from the cache.
func (c *cache) lookupValid(gen uint64, p string) (valid, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return false, false
	}
	if info, ok := c.infos[p]; ok {
		return info != nil, true
	}
	valid, ok = c.valid[p]
	return valid, ok
}

func (c *cache) putValid(gen uint64, p string, valid bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.valid[p] = valid
	}
}

// lookupInfo answers QueryPathInfo from the cache (nil: not valid); the
// caller gets its own copy.
func (c *cache) lookupInfo(gen uint64, p string) (*wire.UnkeyedValidPathInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return nil, false
	}
	info, ok := c.infos[p]
	if !ok || info == nil {
		return nil, ok
	}
	cp := *info
	return &cp, true
}

// putInfo records p's info (nil: not valid).
func (c *cache) putInfo(gen uint64, p string, info *wire.UnkeyedValidPathInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if info != nil {
		cp := *info
		info = &cp
		for _, r := range info.References {
			c.refs[r] = true
		}
	}
	c.infos[p] = info
}

// lookupReferrers answers QueryReferrers from the cache; the caller gets its
// own copy.
func (c *cache) lookupReferrers(gen uint64, p string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return nil, false
	}
	rs, ok := c.rdrs[p]
	return slices.Clone(rs), ok
}

func (c *cache) putReferrers(gen uint64, p string, rs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.rdrs[p] = slices.Clone(rs)
	for _, r := range rs {
		c.back[r] = true
	}
}

// walkingBack says whether p is a referrer of a path held: the client is
// computing a referrers closure.
func (c *cache) walkingBack(p string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.back[p]
}

// ahead says what to fetch with p: the paths (p first) and how much of
// their closure; nil when the client does not seem to be walking. A
// reference of a path held is taken to start a closure walk (clients compute
// closures and topological sorts reference by reference); a path of the last
// list the client got, a walk along that list; a referrer of a path whose
// referrers it asked for, a walk through the referrers it got.
func (c *cache) ahead(p string) (paths []string, closure int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs[p] {
		return []string{p}, prefetch - 1
	}
	if c.back[p] {
		// A referrers closure: the client goes on to the other referrers.
		paths = []string{p}
		for q := range c.back {
			if len(paths) == prefetch {
				break
			}
			if _, held := c.infos[q]; !held && q != p {
				paths = append(paths, q)
			}
		}
		return paths, 0
	}
	i, ok := c.pos[p]
	if !ok {
		return nil, 0
	}
	paths = []string{p}
	for _, q := range c.list[i+1 : min(len(c.list), i+4*prefetch)] {
		if len(paths) == prefetch {
			break
		}
		if _, held := c.infos[q]; !held {
			paths = append(paths, q)
		}
	}
	return paths, 0
}

// hint remembers a list of paths the client got: it may ask about each next.
func (c *cache) hint(ps []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(ps) < 2 || len(ps) > maxHint {
		return
	}
	c.list, c.pos = ps, make(map[string]int, len(ps))
	for i, p := range ps {
		c.pos[p] = i
	}
}

// fetchInfos asks the monitor for the infos of paths and part of their
// closure, and caches them; the asked paths that are not valid are cached
// as such.
func (b *backend) fetchInfos(gen uint64, paths []string, closure int) error {
	got := make(map[string]bool, len(paths)+closure)
	err := b.callFrames(&msg.QueryPathInfos{Paths: storePaths(paths), Closure: uint64(closure)}, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.PathInfos)
		if !ok {
			return false, fmt.Errorf("monitor answered QueryPathInfos with %v", ans.Kind())
		}
		for i := range a.Infos {
			info, err := toWireInfo(&a.Infos[i])
			if err != nil {
				return false, err
			}
			got[info.Path] = true
			b.cache.putInfo(gen, info.Path, &info.UnkeyedValidPathInfo)
		}
		return a.More, nil
	})
	if err != nil {
		return err
	}
	for _, p := range paths {
		if !got[p] {
			b.cache.putInfo(gen, p, nil)
		}
	}
	return nil
}

// fetchReferrers asks the monitor for p's referrers and those of part of its
// referrers' closure, and caches them.
func (b *backend) fetchReferrers(gen uint64, p string, closure int) error {
	got := map[string][]string{}
	var order []string
	err := b.callFrames(&msg.QueryReferrers{Paths: msg.StorePaths{msg.StorePath(p)}, Closure: uint64(closure)}, func(ans msg.Message) (bool, error) {
		a, ok := ans.(*msg.Referrers)
		if !ok {
			return false, fmt.Errorf("monitor answered QueryReferrers with %v", ans.Kind())
		}
		for _, e := range a.Entries { // a long list continues in the next entry for its path
			path := string(e.Path)
			if _, ok := got[path]; !ok {
				order = append(order, path)
			}
			for _, r := range e.Referrers {
				got[path] = append(got[path], string(r))
			}
			if got[path] == nil {
				got[path] = []string{}
			}
		}
		return a.More, nil
	})
	if err != nil {
		return err
	}
	for _, path := range order {
		b.cache.putReferrers(gen, path, got[path])
	}
	return nil
}
