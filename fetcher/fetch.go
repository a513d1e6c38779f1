package fetcher

import (
	"bufio"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"privnix/ipc/msg"
	"privnix/nix/narinfofile"
	"privnix/nix/storepath"
)

// NarInfo fetches and parses <hashPart>.narinfo. A missing file is
// Found: false; a narinfo that does not parse, or names another path, is an
// error.
func (c *Cache) NarInfo(ctx context.Context, dir storepath.Dir, hashPart string) (*msg.NarInfo, error) {
	data, err := c.readSmall(ctx, hashPart+".narinfo", narinfofile.MaxSize)
	if errors.Is(err, errNotFound) {
		return &msg.NarInfo{}, nil
	}
	if err != nil {
		return nil, err
	}
	ni, err := narinfofile.Parse(dir, data)
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s': %s.narinfo: %w", c.URL, hashPart, err)
	}
	if ni.StorePath.HashPart() != hashPart {
		return nil, fmt.Errorf("binary cache '%s': %s.narinfo is for another path, '%s'", c.URL, hashPart, dir.String(ni.StorePath))
	}
	out := ToMsg(dir, ni)
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("binary cache '%s': %s.narinfo: %w", c.URL, hashPart, err)
	}
	return out, nil
}

// ToMsg converts a parsed narinfo to the monitor's structured form.
func ToMsg(dir storepath.Dir, ni *narinfofile.NarInfo) *msg.NarInfo {
	out := &msg.NarInfo{Found: true, StorePath: msg.StorePath(dir.String(ni.StorePath)), URL: ni.URL,
		Compression: ni.Compression, FileSize: ni.FileSize, NarHash: ni.NarHash.String(), NarSize: ni.NarSize}
	if !ni.FileHash.IsZero() {
		out.FileHash = ni.FileHash.String()
	}
	for _, r := range ni.References {
		out.References = append(out.References, msg.StorePath(dir.String(r)))
	}
	if !ni.Deriver.IsZero() {
		out.Deriver = msg.StorePath(dir.String(ni.Deriver))
	}
	for _, s := range ni.Sigs {
		out.Sigs = append(out.Sigs, s.String())
	}
	if ni.CA != nil {
		out.CA = ni.CA.String()
	}
	return out
}

// Nar downloads req.URL, undoes its compression and writes exactly
// req.NarSize bytes of NAR to w. More compressed bytes than req.FileSize (or,
// when that is unknown, than a bound derived from NarSize), more NAR bytes
// than NarSize, or fewer, are refused.
func (c *Cache) Nar(ctx context.Context, req *msg.GetNar, w io.Writer) (*msg.NarSent, error) {
	if err := msg.ValidNarURL(req.URL); err != nil {
		return nil, fmt.Errorf("binary cache '%s': %w", c.URL, err)
	}
	body, err := c.open(ctx, req.URL)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("binary cache '%s' has no file '%s'", c.URL, req.URL)
	}
	if err != nil {
		return nil, err
	}
	defer body.Close()
	fileMax := req.FileSize
	if fileMax == 0 {
		fileMax = req.NarSize + req.NarSize/4 + 1<<20 // no compression makes data much larger
	}
	file := &countingReader{r: io.LimitReader(body, int64(fileMax)+1)}
	plain, err := decompressor(req.Compression, bufio.NewReaderSize(file, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s': %w", c.URL, err)
	}
	defer plain.Close()
	n, err := io.Copy(w, io.LimitReader(plain, int64(req.NarSize)+1))
	if file.n > fileMax {
		return nil, fmt.Errorf("binary cache '%s': '%s' is larger than the narinfo says (%d bytes)", c.URL, req.URL, fileMax)
	}
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s': downloading '%s': %w", c.URL, req.URL, err)
	}
	if uint64(n) > req.NarSize {
		return nil, fmt.Errorf("binary cache '%s': the NAR of '%s' is larger than its NarSize %d", c.URL, req.URL, req.NarSize)
	}
	if uint64(n) < req.NarSize {
		return nil, fmt.Errorf("binary cache '%s': the NAR of '%s' has %d bytes, its NarSize is %d (truncated)", c.URL, req.URL, n, req.NarSize)
	}
	return &msg.NarSent{FileBytes: file.n, NarBytes: uint64(n)}, nil
}

type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

// decompressor undoes one of msg.Compressions.
func decompressor(compression string, r io.Reader) (io.ReadCloser, error) {
	switch compression {
	case "none":
		return io.NopCloser(r), nil
	case "xz":
		cfg := xz.ReaderConfig{SingleStream: false}
		x, err := cfg.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.NopCloser(x), nil
	case "zstd":
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return z.IOReadCloser(), nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("unsupported compression '%s'", compression)
}
