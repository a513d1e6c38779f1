package monitor

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"privnix/internal/narfs/dumpfs"
	"privnix/monitor/storefs"
	"privnix/nix/nixhash"
)

// Second hashes of a sealed tree, for the rarer content addresses (a
// recursive add with sha1 or sha512, a claimed flat address). They read the
// canonical root-owned tree after Seal, through directory fds only.

// narHashAs hashes the sealed tree's NAR serialisation with algo.
func narHashAs(st *storefs.Staging, algo nixhash.Algo) (nixhash.Hash, error) {
	h := algo.New()
	if err := dumpfs.Dump(h, int(st.Dir().Fd()), st.SealedName()); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}

// fileHashAs hashes the contents of the sealed tree, which must be one
// regular file.
func fileHashAs(st *storefs.Staging, algo nixhash.Algo) (nixhash.Hash, error) {
	fd, err := dumpfs.OpenBeneath(int(st.Dir().Fd()), st.SealedName(), unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nixhash.Hash{}, err
	}
	f := os.NewFile(uintptr(fd), st.SealedName())
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nixhash.Hash{}, err
	}
	if !fi.Mode().IsRegular() {
		return nixhash.Hash{}, fmt.Errorf("a flat content address needs one regular file, not %v", fi.Mode().Type())
	}
	h := algo.New()
	if _, err := io.CopyN(h, f, fi.Size()); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}
