package monitor

import (
	"sync"
)

// buildprocSpare keeps one privnix-build started ahead of time for the next
// sandboxed build: its exec, new namespaces and Go start-up then overlap the
// build before it instead of adding to the next one. The spare has said Hello
// and nothing else, exactly as one started on demand; it serves one build.
// Builds with the host network (fixed-output) start theirs on demand, since
// their namespaces differ. No spare exists before the first build.
type buildprocSpare struct {
	m        *Monitor
	mu       sync.Mutex
	ready    *child        // guarded by mu
	starting bool          // a spare is being started; guarded by mu
	started  chan struct{} // closed when the spare being started is ready (or failed); guarded by mu
	closed   bool          // guarded by mu
}

func newBuildprocSpare(m *Monitor) *buildprocSpare { return &buildprocSpare{m: m} }

// take returns a started privnix-build for a build with or without the host
// network, and starts the next spare in the background. A spare on its way
// is waited for: it started before one started now would.
func (p *buildprocSpare) take(network bool) (*child, error) {
	if !network {
		p.mu.Lock()
		if p.ready == nil && p.starting {
			started := p.started
			p.mu.Unlock()
			<-started
			p.mu.Lock()
		}
		c := p.ready
		p.ready = nil
		p.mu.Unlock()
		p.refill()
		if c != nil {
			select {
			case <-c.done: // ended while it waited (killed from outside)
				c.kill()
			default:
				return c, nil
			}
		}
	}
	return p.m.startBuildproc(network)
}

// refill starts a spare unless one is ready or on its way.
func (p *buildprocSpare) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.starting || p.ready != nil || p.closed {
		return
	}
	p.starting = true
	started := make(chan struct{})
	p.started = started
	go func() {
		defer close(started)
		c, err := p.m.startBuildproc(false)
		if err != nil {
			p.m.log.Warn("starting a spare privnix-build", "err", err)
		}
		p.mu.Lock()
		p.starting = false
		if c != nil && p.ready == nil && !p.closed {
			p.ready, c = c, nil
		}
		p.mu.Unlock()
		if c != nil {
			c.kill()
		}
	}()
}

// close kills the spare; none is started after.
func (p *buildprocSpare) close() {
	p.mu.Lock()
	c := p.ready
	p.ready, p.closed = nil, true
	p.mu.Unlock()
	if c != nil {
		c.kill()
	}
}

// startBuildproc starts privnix-build (as root, in the build's namespaces)
// and waits for its Hello.
func (m *Monitor) startBuildproc(network bool) (*child, error) {
	// Without root, in a user namespace of its own too (buildUserNS).
	c, err := m.buildSpawner.spawn(spawnSpec{role: roleBuild, build: true, network: network, userNS: !m.root})
	if err != nil {
		return nil, err
	}
	go m.forwardLogs(c)
	if err := awaitHello(c); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}
