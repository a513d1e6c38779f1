package monitor

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"

	"privnix/monitor/storedb"
	"privnix/nix/narinfo"
	"privnix/nix/storepath"
)

// maxKeyFile bounds what is read of a secret-key-files entry: a key is ~100 bytes.
const maxKeyFile = 4096

// loadSigningKeys reads the secret-key-files of nix.conf, as the daemon's
// own user (root), at start and at each reload. A file that is not owned by
// that user, or that its group or others may read or write, is refused (Nix
// signs with it anyway); an unreadable or malformed one is skipped. Either
// way the log names the file and the reason, never its contents.
func loadSigningKeys(files []string, log *slog.Logger) []narinfo.SecretKey {
	var keys []narinfo.SecretKey
	for _, file := range files {
		k, err := readSigningKey(file)
		if err != nil {
			log.Warn("secret-key-files: not signing with this key file", "file", file, "reason", err.Error())
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// readSigningKey opens file, checks owner and mode on the opened file, and
// parses the one key it holds.
func readSigningKey(file string) (narinfo.SecretKey, error) {
	f, err := os.Open(file)
	if err != nil {
		return narinfo.SecretKey{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return narinfo.SecretKey{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok || !fi.Mode().IsRegular():
		return narinfo.SecretKey{}, fmt.Errorf("not a regular file")
	case st.Uid != uint32(os.Geteuid()):
		return narinfo.SecretKey{}, fmt.Errorf("owned by uid %d, not by the daemon's uid %d", st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o077 != 0:
		return narinfo.SecretKey{}, fmt.Errorf("mode %#o: group or others have access (chmod 600)", fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return narinfo.SecretKey{}, err
	}
	if len(data) > maxKeyFile {
		return narinfo.SecretKey{}, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	k, err := narinfo.ParseSecretKey(strings.TrimSpace(string(data)))
	if err != nil {
		// The parser's message may quote part of the file: say only what was wrong.
		return narinfo.SecretKey{}, fmt.Errorf("not a secret key (name:base64 of 64 bytes)")
	}
	return k, nil
}

// signBuilt adds to each locally built output (or one --check confirmed) a
// signature by each key of the snapshot, over the fingerprint of what will
// be registered, as Nix's LocalStore does for what it builds; substituted and
// uploaded paths are not signed. A signature already there is not repeated.
func (sn *snapshot) signBuilt(dir storepath.Dir, infos []storedb.PathInfo) {
	for i := range infos {
		in := &infos[i]
		fp := narinfo.Fingerprint(dir, in.Path, in.NarHash, in.NarSize, in.References)
		for _, k := range sn.signers {
			if sig := k.Sign(fp).String(); !slices.Contains(in.Sigs, sig) {
				in.Sigs = append(in.Sigs, sig)
			}
		}
	}
}
