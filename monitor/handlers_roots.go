package monitor

import (
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"privnix/ipc/msg"
	"privnix/monitor/storedb"
	"privnix/nix/nixbase32"
)

func handleAddSignatures(s *session, req msg.Message, _ []*os.File) (reply, error) {
	a := req.(*msg.AddSignatures)
	p, err := s.path(a.Path)
	if err != nil {
		return reply{}, err
	}
	if !s.trusted {
		return answer(refuse("you are not privileged to add signatures")), nil
	}
	err = s.m.store.with(func(db *storedb.DB) error { return db.AddSignatures(p, a.Sigs) })
	if err != nil {
		return s.failed("AddSignatures", err), nil
	}
	s.audit.Info("signatures added", "path", s.m.store.dir.String(p), "count", len(a.Sigs))
	return answer(&msg.OK{}), nil
}

// handleAddIndirectRoot records Link as an indirect root, as Nix does:
// <state>/gcroots/auto/<nix32 sha1 of Link> → Link. The collector resolves the
// link later, as its owner (DESIGN.md "Garbage collection").
func handleAddIndirectRoot(s *session, req msg.Message, _ []*os.File) (reply, error) {
	link := req.(*msg.AddIndirectRoot).Link
	sum := sha1.Sum([]byte(link))
	if err := s.m.makeAutoRoot(nixbase32.EncodeToString(sum[:]), link); err != nil {
		return s.failed("AddIndirectRoot", err), nil
	}
	return answer(&msg.OK{}), nil
}

// handleSyncWithGC waits for the running collection, if any.
func handleSyncWithGC(s *session, _ msg.Message, _ []*os.File) (reply, error) {
	s.m.roots.syncWithGC()
	return answer(&msg.OK{}), nil
}

// makeAutoRoot (re)places the symlink gcroots/auto/name → target, fd-relative
// beneath the root-owned state directory, atomically.
func (m *Monitor) makeAutoRoot(name, target string) error {
	dir := filepath.Join(m.cfg.Paths.StateDir, "gcroots", "auto")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if m.root && (st.Uid != 0 || st.Mode&0o022 != 0) {
		return fmt.Errorf("%s must be root's and writable by no one else", dir)
	}
	tmp := ".tmp-" + name
	unix.Unlinkat(fd, tmp, 0)
	if err := unix.Symlinkat(target, fd, tmp); err != nil {
		return err
	}
	return unix.Renameat(fd, tmp, fd, name)
}
