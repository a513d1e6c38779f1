// Package fetcher is the binary-cache client of privnix-fetch: it reads a
// cache's nix-cache-info and narinfo files (file://, http://, https://) and
// downloads and decompresses NARs, with connect timeouts, bounded sizes and
// retries. It runs in the fetcher process, an unprivileged uid with network
// access and no writable filesystem; the monitor gets only structured
// answers (ipc/msg fetch.go) and the NAR goes down a pipe to a storeproc.
package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"privnix/ipc/msg"
)

// Limits of what one cache may send.
const (
	MaxCacheInfo    = 64 << 10 // bytes of nix-cache-info
	DefaultPriority = 50       // Nix's default when nix-cache-info has none
	// DefaultConnectTimeout applies when the job says 0 (Nix: connect-timeout
	// 0 means the OS default; we never wait that long).
	DefaultConnectTimeout = 30 * time.Second
	// StallTimeout ends a download that sends nothing for this long (Nix's
	// stalled-download-timeout is 300 s).
	StallTimeout = 300 * time.Second
	// Attempts is how often a request that failed in a way that may be
	// transient (connection refused or reset, 5xx) is tried.
	Attempts = 3
)

// errNotFound: the cache has no such file (HTTP 404/403/410, no file).
var errNotFound = errors.New("not found")

// Cache is one binary cache.
type Cache struct {
	URL  string // as configured
	dir  string // file://: the directory
	base *url.URL
	http *http.Client
}

// NewCache checks the URL and prepares the client.
func NewCache(raw string, connectTimeout time.Duration) (*Cache, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("substituter '%s' is not a URL: %w", raw, err)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("substituter '%s': parameters, fragments and credentials in the URL are not supported", raw)
	}
	c := &Cache{URL: raw}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("substituter '%s': a file:// URL needs an absolute path", raw)
		}
		c.dir = filepath.Clean(u.Path)
		return c, nil
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("substituter '%s' has no host", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.base = u
		c.http = newClient(connectTimeout)
		return c, nil
	}
	return nil, fmt.Errorf("substituter '%s': unsupported URL scheme (file, http and https are)", raw)
}

// Dir is the directory of a file:// cache ("" for HTTP).
func (c *Cache) Dir() string { return c.dir }

// Port is the TCP port an HTTP cache is reached on (0 for file://). The
// fetcher may connect to these ports only, so a redirect to another port
// fails.
func (c *Cache) Port() uint16 {
	if c.base == nil {
		return 0
	}
	if p, err := strconv.ParseUint(c.base.Port(), 10, 16); err == nil {
		return uint16(p)
	}
	if c.base.Scheme == "https" {
		return 443
	}
	return 80
}

func newClient(connectTimeout time.Duration) *http.Client {
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil, // the fetcher's environment is empty
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: StallTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // NARs are compressed already; narinfo is small
	}
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}}
}

// open returns the body of the file at rel (relative, already checked by
// msg.ValidNarURL or a constant name), trying again on transient errors.
func (c *Cache) open(ctx context.Context, rel string) (io.ReadCloser, error) {
	if c.dir != "" {
		f, err := os.Open(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errNotFound
		}
		return f, err
	}
	var last error
	for attempt := range Attempts {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		body, retry, err := c.get(ctx, rel)
		if err == nil || !retry {
			return body, err
		}
		last = err
	}
	return nil, last
}

// get does one GET; retry says whether another attempt may help.
func (c *Cache) get(ctx context.Context, rel string) (io.ReadCloser, bool, error) {
	u := *c.base
	u.Path = c.base.Path + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, true, fmt.Errorf("unable to download '%s': %w", u.String(), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return newStallReader(resp.Body), false, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusGone:
		resp.Body.Close()
		return nil, false, errNotFound
	}
	resp.Body.Close()
	return nil, resp.StatusCode >= 500, fmt.Errorf("unable to download '%s': HTTP error %d", u.String(), resp.StatusCode)
}

// stallReader ends a download that receives nothing for StallTimeout: a
// timer, pushed back by every read, closes the body.
type stallReader struct {
	r       io.ReadCloser
	timer   *time.Timer
	stalled atomic.Bool
}

func newStallReader(r io.ReadCloser) *stallReader {
	s := &stallReader{r: r}
	s.timer = time.AfterFunc(StallTimeout, func() { s.stalled.Store(true); r.Close() })
	return s
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.stalled.Load() {
		return n, fmt.Errorf("download stalled: nothing received for %v", StallTimeout)
	}
	s.timer.Reset(StallTimeout)
	return n, err
}

func (s *stallReader) Close() error {
	s.timer.Stop()
	return s.r.Close()
}

// readSmall reads a whole small file, refusing more than max bytes.
func (c *Cache) readSmall(ctx context.Context, rel string, max int64) ([]byte, error) {
	body, err := c.open(ctx, rel)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading '%s' from '%s': %w", rel, c.URL, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("'%s' from '%s' is larger than %d bytes", rel, c.URL, max)
	}
	return data, nil
}

// Info reads nix-cache-info: StoreDir must be storeDir when it is given;
// Priority defaults to 50, WantMassQuery to false. A cache without the file
// is used with those defaults (as Nix's HTTP store does).
func (c *Cache) Info(ctx context.Context, storeDir string) msg.CacheInfo {
	data, err := c.readSmall(ctx, "nix-cache-info", MaxCacheInfo)
	if errors.Is(err, errNotFound) {
		data, err = nil, nil
	}
	if err != nil {
		return msg.CacheInfo{Err: short(err.Error())}
	}
	info, err := ParseCacheInfo(data)
	if err != nil {
		return msg.CacheInfo{Err: short(fmt.Sprintf("binary cache '%s': %v", c.URL, err))}
	}
	if info.StoreDir == "" {
		info.StoreDir = storeDir
	}
	if info.StoreDir != storeDir {
		return msg.CacheInfo{Err: short(fmt.Sprintf("binary cache '%s' is for Nix stores with prefix '%s', not '%s'", c.URL, info.StoreDir, storeDir))}
	}
	return info
}

// ParseCacheInfo parses nix-cache-info: "Key: value" lines; StoreDir,
// WantMassQuery and Priority are read, other keys ignored (as Nix).
func ParseCacheInfo(data []byte) (msg.CacheInfo, error) {
	info := msg.CacheInfo{Priority: DefaultPriority}
	if len(data) > MaxCacheInfo {
		return msg.CacheInfo{}, fmt.Errorf("nix-cache-info of %d bytes", len(data))
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return msg.CacheInfo{}, fmt.Errorf("nix-cache-info line %d is not \"Key: value\"", i+1)
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "StoreDir":
			if err := msg.ValidStoreDir(value); err != nil {
				return msg.CacheInfo{}, fmt.Errorf("nix-cache-info StoreDir: %w", err)
			}
			info.StoreDir = value
		case "WantMassQuery":
			info.WantMassQuery = value == "1"
		case "Priority":
			n, err := strconv.ParseUint(value, 10, 31)
			if err != nil {
				return msg.CacheInfo{}, fmt.Errorf("nix-cache-info Priority %q is not a number", value)
			}
			info.Priority = n
		}
	}
	return info, nil
}

// short cuts a text to what one msg field carries.
func short(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > msg.MaxText {
		s = s[:msg.MaxText]
	}
	return s
}
