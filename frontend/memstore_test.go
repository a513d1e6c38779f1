package frontend

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"privnix/frontend/wire"
)

// memStore is a small but real in-memory store for tests: it computes content-addressed
// paths and NAR hashes as Nix does (§5.5) and keeps path infos and NARs in maps.
type memStore struct {
	mu        sync.Mutex
	dir       string
	infos     map[string]wire.UnkeyedValidPathInfo
	nars      map[string][]byte
	outputs   map[string]map[string]string // drv → output → path
	tempRoots []string
	opts      []wire.ClientOptions
}

func newMemStore(dir string) *memStore {
	return &memStore{dir: dir, infos: map[string]wire.UnkeyedValidPathInfo{}, nars: map[string][]byte{}, outputs: map[string]map[string]string{}}
}

const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

func nix32(b []byte) string {
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, n)
	for k := n - 1; k >= 0; k-- {
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out[n-1-k] = nix32Alphabet[c&0x1f]
	}
	return string(out)
}

func newHash(algo string) hash.Hash {
	switch algo {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha512":
		return sha512.New()
	}
	return sha256.New()
}

func sum(algo string, data []byte) []byte {
	h := newHash(algo)
	h.Write(data)
	return h.Sum(nil)
}

// makePath computes "<dir>/<nix32(compress20(sha256(fingerprint)))>-<name>".
func (m *memStore) makePath(typ string, inner []byte, name string) string {
	fp := typ + ":sha256:" + hex.EncodeToString(inner) + ":" + m.dir + ":" + name
	h := sha256.Sum256([]byte(fp))
	var c [20]byte
	for i, b := range h {
		c[i%20] ^= b
	}
	return m.dir + "/" + nix32(c[:]) + "-" + name
}

func withRefs(typ string, refs []string) string {
	for _, r := range slices.Sorted(slices.Values(refs)) {
		typ += ":" + r
	}
	return typ
}

// fileNAR wraps data as the NAR of one regular file.
func fileNAR(data []byte) []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		w.String(s)
	}
	w.Bytes(data)
	w.String(")")
	_ = w.Flush()
	return b.Bytes()
}

// narFileContents extracts the file of a single-file NAR (what old clients send for flat adds).
func narFileContents(nar []byte) ([]byte, error) {
	r := wire.NewReader(bytes.NewReader(nar))
	for _, want := range []string{"nix-archive-1", "(", "type", "regular"} {
		if s, err := r.String(64, "NAR"); err != nil || s != want {
			return nil, Errorf("flat add: the NAR is not a single regular file")
		}
	}
	s, err := r.String(64, "NAR")
	if err == nil && s == "executable" {
		_, _ = r.String(0, "NAR")
		s, err = r.String(64, "NAR")
	}
	if err != nil || s != "contents" {
		return nil, Errorf("flat add: the NAR is not a single regular file")
	}
	return r.Bytes(wire.MaxTextLen, "NAR contents")
}

func (m *memStore) register(path string, nar []byte, refs []string, ca string) wire.ValidPathInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := sha256.Sum256(nar)
	info := wire.UnkeyedValidPathInfo{
		NarHash: hex.EncodeToString(h[:]), References: refs, NarSize: uint64(len(nar)),
		RegistrationTime: uint64(time.Now().Unix()), CA: ca,
	}
	m.infos[path], m.nars[path] = info, nar
	return wire.ValidPathInfo{Path: path, UnkeyedValidPathInfo: info}
}

func (m *memStore) SetOptions(ctx context.Context, o wire.ClientOptions) ([]string, error) {
	m.mu.Lock()
	m.opts = append(m.opts, o)
	m.mu.Unlock()
	var warnings []string
	for _, p := range o.Overrides {
		if p.Key == "substituters" && p.Value != "" {
			warnings = append(warnings, "ignoring untrusted substituter '"+p.Value+"'")
		}
	}
	return warnings, nil
}

func (m *memStore) info(p string) (wire.UnkeyedValidPathInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.infos[p]
	return i, ok
}

func (m *memStore) IsValidPath(ctx context.Context, p string) (bool, error) {
	_, ok := m.info(p)
	return ok, nil
}

func (m *memStore) QueryValidPaths(ctx context.Context, ps []string, _ bool) ([]string, error) {
	var out []string
	for _, p := range ps {
		if _, ok := m.info(p); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *memStore) QueryPathInfo(ctx context.Context, p string) (*wire.UnkeyedValidPathInfo, error) {
	i, ok := m.info(p)
	if !ok {
		return nil, nil
	}
	return &i, nil
}

func (m *memStore) QueryReferrers(ctx context.Context, p string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for q, i := range m.infos {
		if slices.Contains(i.References, p) {
			out = append(out, q)
		}
	}
	return out, nil
}

func (m *memStore) QueryPathFromHashPart(ctx context.Context, h string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.infos {
		if strings.HasPrefix(p, m.dir+"/"+h+"-") {
			return p, nil
		}
	}
	return "", nil
}

func (m *memStore) QueryAllValidPaths(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.infos)), nil
}

func (m *memStore) QueryValidDerivers(ctx context.Context, p string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for drv, outs := range m.outputs {
		if slices.Contains(slices.Collect(maps.Values(outs)), p) {
			out = append(out, drv)
		}
	}
	return out, nil
}

func (m *memStore) QueryDerivationOutputMap(ctx context.Context, drv string) (map[string]string, error) {
	if _, ok := m.info(drv); !ok {
		return nil, Errorf("path '%s' is not valid", drv)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.outputs[drv]), nil
}

func (m *memStore) QuerySubstitutablePaths(ctx context.Context, ps []string) ([]string, error) {
	return nil, nil
}

func (m *memStore) QuerySubstitutablePathInfos(ctx context.Context, ps map[string]string) (map[string]SubstitutablePathInfo, error) {
	return nil, nil
}

func (m *memStore) QueryMissing(ctx context.Context, ts []wire.DerivedPath) (Missing, error) {
	var miss Missing
	for _, t := range ts {
		if _, ok := m.info(t.Path); !ok || t.Built {
			miss.Unknown = append(miss.Unknown, t.Path)
		}
	}
	return miss, nil
}

func (m *memStore) AddTempRoot(ctx context.Context, p string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tempRoots = append(m.tempRoots, p)
	return nil
}

func (m *memStore) AddIndirectRoot(ctx context.Context, p string) error { return ErrNotImplemented }
func (m *memStore) SyncWithGC(ctx context.Context) error                { return nil }

// CollectGarbage: the temporary roots and their reference closure are live;
// deleting removes dead paths (whole store or the ones named), refusing a
// live one with Nix's text. Sizes are NAR sizes.
func (m *memStore) CollectGarbage(ctx context.Context, req GCRequest) (GCResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := map[string]bool{}
	todo := slices.Clone(m.tempRoots)
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if i, ok := m.infos[p]; ok && !live[p] {
			live[p] = true
			todo = append(todo, i.References...)
		}
	}
	var res GCResult
	del := func(p string) {
		res.Paths = append(res.Paths, p)
		res.BytesFreed += m.infos[p].NarSize
		delete(m.infos, p)
		delete(m.nars, p)
	}
	switch req.Action {
	case 0, 1:
		for p := range m.infos {
			if live[p] == (req.Action == 0) {
				res.Paths = append(res.Paths, p)
			}
		}
	case 2:
		for p := range m.infos {
			if !live[p] && res.BytesFreed <= req.MaxFreed {
				del(p)
			}
		}
	case 3:
		for _, p := range req.Paths {
			if live[p] {
				return res, Errorf("Cannot delete path '%s' since it is still alive. To find out why, use: nix-store --query --roots", p)
			}
			if _, ok := m.infos[p]; ok {
				del(p)
			}
		}
	}
	return res, nil
}

// FindRoots: the temporary roots, censored as for an untrusted client.
func (m *memStore) VerifyStore(ctx context.Context, checkContents, repair bool) (bool, error) {
	return false, nil
}

func (m *memStore) OptimiseStore(ctx context.Context) error { return nil }

func (m *memStore) FindRoots(ctx context.Context) ([]GCRoot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []GCRoot
	for _, p := range m.tempRoots {
		out = append(out, GCRoot{Link: "{censored}", Path: p})
	}
	return out, nil
}

func (m *memStore) AddSignatures(ctx context.Context, p string, sigs []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.infos[p]
	if !ok {
		return Errorf("path '%s' is not valid", p)
	}
	i.Sigs = append(i.Sigs, sigs...)
	m.infos[p] = i
	return nil
}

func (m *memStore) AddTextToStore(ctx context.Context, name, text string, refs []string) (string, error) {
	info, err := m.AddToStore(ctx, AddToStoreRequest{Name: name, Method: "text", Algo: "sha256", References: refs}, strings.NewReader(text))
	return info.Path, err
}

func (m *memStore) AddToStore(ctx context.Context, req AddToStoreRequest, data io.Reader) (wire.ValidPathInfo, error) {
	LoggerFrom(ctx).Log(wire.LvlTalkative, "adding '"+req.Name+"'")
	b, err := io.ReadAll(data)
	if err != nil {
		return wire.ValidPathInfo{}, err
	}
	if req.FlatInNAR {
		if b, err = narFileContents(b); err != nil {
			return wire.ValidPathInfo{}, err
		}
	}
	h := sum(req.Algo, b)
	ca := wire.ContentAddress{Method: req.Method, Algo: req.Algo, Hash: nix32(h)}.String()
	var p string
	nar := b
	switch {
	case req.Method == "text":
		p = m.makePath(withRefs("text", req.References), h, req.Name)
		nar = fileNAR(b)
	case req.Method == "nar" && req.Algo == "sha256":
		p = m.makePath(withRefs("source", req.References), h, req.Name)
	default:
		if len(req.References) > 0 {
			return wire.ValidPathInfo{}, Errorf("fixed output '%s' is not allowed to refer to other store paths", req.Name)
		}
		r := map[string]string{"nar": "r:"}[req.Method]
		inner := sha256.Sum256([]byte("fixed:out:" + r + req.Algo + ":" + hex.EncodeToString(h) + ":"))
		p = m.makePath("output:out", inner[:], req.Name)
		if req.Method == "flat" {
			nar = fileNAR(b)
		}
	}
	return m.register(p, nar, req.References, ca), nil
}

func (m *memStore) AddToStoreNar(ctx context.Context, req AddToStoreNarRequest, nar io.Reader) error {
	b, err := io.ReadAll(nar)
	if err != nil {
		return err
	}
	h := sha256.Sum256(b)
	if hex.EncodeToString(h[:]) != req.Info.NarHash {
		return Errorf("hash mismatch importing path '%s'", req.Info.Path)
	}
	if !req.DontCheckSigs && len(req.Info.Sigs) == 0 && req.Info.CA == "" {
		return Errorf("cannot add path '%s' because it lacks a valid signature", req.Info.Path)
	}
	m.register(req.Info.Path, b, req.Info.References, req.Info.CA)
	return nil
}

func (m *memStore) NarFromPath(ctx context.Context, p string, w io.Writer) error {
	m.mu.Lock()
	nar, ok := m.nars[p]
	m.mu.Unlock()
	if !ok {
		return Errorf("path '%s' is not valid", p)
	}
	_, err := w.Write(nar)
	return err
}

// BuildDerivation: this store cannot build.
func (m *memStore) BuildDerivation(ctx context.Context, drvPath string, d BasicDerivation, mode uint64) (wire.BuildResult, error) {
	return wire.BuildResult{}, Errorf("this store cannot build '%s'", drvPath)
}

// BuildPaths realises only what is already there: this store cannot build.
func (m *memStore) BuildPaths(ctx context.Context, targets []wire.DerivedPath, mode uint64) ([]wire.KeyedBuildResult, error) {
	var out []wire.KeyedBuildResult
	for _, t := range targets {
		r := wire.KeyedBuildResult{Path: t}
		if _, ok := m.info(t.Path); ok && !t.Built {
			r.Status = 2 // AlreadyValid
		} else {
			r.Status, r.ErrorMsg = 14, fmt.Sprintf("path '%s' is required, but there is no substituter that can build it", t.Path)
		}
		out = append(out, r)
	}
	return out, nil
}
