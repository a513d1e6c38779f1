package monitor

import (
	"errors"
	"sync"
)

// fetcherPool holds one request's fetchers: at most substJobs, started on
// demand, each serving one request at a time.
type fetcherPool struct {
	m       *Monitor
	urls    []string
	timeout uint64 // connect-timeout, seconds
	mu      sync.Mutex
	cond    *sync.Cond
	idle    []*child        // guarded by mu
	all     map[*child]bool // guarded by mu
	n       int             // started or starting; guarded by mu
	err     error           // the first start failure; guarded by mu
}

func newFetcherPool(m *Monitor, urls []string, timeout uint64) *fetcherPool {
	p := &fetcherPool{m: m, urls: urls, timeout: timeout, all: map[*child]bool{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

var errNoCaches = errors.New("no substituters")

// get returns an idle fetcher, starting one if fewer than substJobs run.
func (p *fetcherPool) get() (*child, error) {
	if len(p.urls) == 0 {
		return nil, errNoCaches
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1]
			p.idle = p.idle[:n-1]
			return c, nil
		}
		if p.err != nil {
			return nil, p.err
		}
		if p.n < substJobs {
			p.n++
			p.mu.Unlock()
			c, err := p.m.startFetcher(p.urls, p.timeout)
			p.mu.Lock()
			if err != nil {
				p.n--
				p.err = err
				p.cond.Broadcast()
				p.m.log.Error("starting a fetcher", "err", err)
				return nil, err
			}
			p.all[c] = true
			return c, nil
		}
		p.cond.Wait()
	}
}

// put returns a fetcher; a broken one (it broke the protocol or its
// channel failed) is killed, and a later get starts another.
func (p *fetcherPool) put(c *child, broken bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if broken {
		delete(p.all, c)
		p.n--
		p.m.releaseWorker(c)
	} else {
		p.idle = append(p.idle, c)
	}
	p.cond.Signal()
}

// close kills every fetcher (the request is over).
func (p *fetcherPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.all {
		p.m.releaseWorker(c)
	}
	p.all, p.idle, p.n = map[*child]bool{}, nil, 0
}
