package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// auditRecords reads an --audit-log file: one JSON object a line, each with
// a message and the client's uid and pid (except reloads).
func auditRecords(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

func countAudit(recs []map[string]any, msg string) int {
	n := 0
	for _, r := range recs {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

// Compromised frontends flooding their log channels while others send
// forged frames: the children's records are rate-limited and dropped, and
// still every audit record (each connection accepted, each frontend killed)
// is in the audit log, which holds no child record.
func TestAuditSurvivesLogFlood(t *testing.T) {
	testenv.RequireRoot(t)
	bin := evilBinDir(t)
	s := testenv.NewStore(t, skeletonConf)
	auditFile := filepath.Join(s.Root, "audit.log")
	d := testenv.StartPrivnixd(t, s, "--bin-dir", bin, "--audit-log", auditFile)

	const floods = 4
	attacks := []string{"unknown-kind", "oversized", "huge-list", "out-of-range", "claims-uid-0",
		"second-hello", "unexpected-fd", "trailing-bytes", "arity"}
	var wg sync.WaitGroup
	for i := 0; i < floods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := attack(t, s.SocketPath, "log-flood"); !strings.HasPrefix(got, "answer kind") {
				t.Errorf("after a log flood the request got %q, want an answer", got)
			}
		}()
	}
	for _, a := range attacks {
		if got := attack(t, s.SocketPath, a); strings.HasPrefix(got, "answer kind") {
			t.Errorf("%s: the monitor answered (%q); it must kill the sender", a, got)
		}
	}
	wg.Wait()
	// The drop counts are logged when each flooding frontend's log channel
	// closes, after it is released.
	if !waitUntil(func() bool { return strings.Count(d.Log.String(), "child log records dropped") >= floods }) {
		t.Fatalf("%d of %d floods recorded as dropped:\n%s", strings.Count(d.Log.String(), "child log records dropped"), floods, d.Log.String())
	}
	d.Stop(t)

	recs := auditRecords(t, auditFile)
	if n, want := countAudit(recs, "connection accepted"), floods+len(attacks); n != want {
		t.Errorf("%d connections accepted in the audit log, want %d", n, want)
	}
	if n := countAudit(recs, "frontend killed: request refused as a protocol violation") + countAudit(recs, "frontend killed: bad message"); n != len(attacks) {
		t.Errorf("%d frontends killed in the audit log, want %d", n, len(attacks))
	}
	for _, r := range recs {
		if r["msg"] == "child log" || r["role"] != nil {
			t.Errorf("a child's record in the audit log: %v", r)
		}
		if _, ok := r["client_uid"]; !ok {
			t.Errorf("an audit record without the client's uid: %v", r)
		}
	}
	if strings.Contains(d.Log.String(), "connection accepted") {
		t.Errorf("audit records went to the main log too")
	}
}

// Every kind of audit record, from real clients: who connected or was
// refused, what was registered, built (with which build user), deleted, and
// what policy refused, each with the client's uid.
func TestAuditLog(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	lockBuildUsers(t)
	s := testenv.NewStore(t, skeletonConf+"sandbox = false\n")
	auditFile := filepath.Join(s.Root, "audit.log")
	d := testenv.StartPrivnixd(t, s, "--audit-log", auditFile)
	uid := func(name string) float64 {
		n, err := userLookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return float64(n)
	}
	run := func(user string, args ...string) string {
		t.Helper()
		r := s.Run(t, user, nil, args[0], args[1:]...)
		if r.Err != nil {
			t.Fatalf("%s as %s: %v\n%s", args, user, r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	in := filepath.Join(s.Root, "in")
	os.MkdirAll(in, 0o755)
	os.WriteFile(filepath.Join(in, "hello.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(in, "trivial.nix"), []byte(`derivation { name = "trivial"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; }`), 0o644)

	s.Run(t, testenv.Carol, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	added := run(testenv.Alice, "nix-store", "--add", filepath.Join(in, "hello.txt"))
	run(testenv.Alice, "nix", "--extra-experimental-features", "nix-command", "--option", "substituters", "https://example.org", "store", "ping")
	built := run(testenv.Alice, "nix-build", "--no-out-link", filepath.Join(in, "trivial.nix"))
	exported := s.Run(t, testenv.Alice, nil, "nix-store", "--export", built)
	run(testenv.Bob, "nix-store", "--delete", added, built)
	// An unsigned input-addressed path: the monitor refuses alice's import.
	if r := s.Run(t, testenv.Alice, []byte(exported.Stdout), "nix-store", "--import"); r.Err == nil {
		t.Errorf("alice's unsigned import was not refused")
	}
	d.Stop(t)

	recs := auditRecords(t, auditFile)
	find := func(msg, user string, attrs map[string]string) {
		t.Helper()
		for _, r := range recs {
			if r["msg"] != msg || r["client_uid"] != uid(user) {
				continue
			}
			ok := true
			for k, v := range attrs {
				got, _ := r[k].(string)
				ok = ok && strings.Contains(got, v)
			}
			if ok {
				return
			}
		}
		t.Errorf("no audit record %q for %s with %v in:\n%v", msg, user, attrs, recs)
	}
	find("connection refused", testenv.Carol, map[string]string{"rule": "allowed-users"})
	find("connection accepted", testenv.Alice, nil)
	find("path registered", testenv.Alice, map[string]string{"path": added})
	find("client setting ignored by policy", testenv.Alice, map[string]string{"reason": "https://example.org"})
	find("request refused by policy", testenv.Alice, map[string]string{"reason": "lacks a valid signature"})
	find("build started", testenv.Alice, map[string]string{"drv": "-trivial.drv", "build_user": "pnxbld"})
	find("build output registered", testenv.Alice, map[string]string{"path": built})
	find("build finished", testenv.Alice, map[string]string{"drv": "-trivial.drv", "build_user": "pnxbld"})
	find("garbage collection started", testenv.Bob, nil)
	// Deletions are recorded one path at a time (path) or a batch at a
	// time (paths).
	for _, r := range recs {
		if p, ok := r["paths"].(string); ok && r["msg"] == "path deleted" {
			r["path"] = p
		}
	}
	find("path deleted", testenv.Bob, map[string]string{"path": added})
	find("path deleted", testenv.Bob, map[string]string{"path": built})
}

// Log rotation: the audit file moved away and SIGHUP sent, privnixd writes
// to a new file of the same name, mode 0600.
func TestAuditLogReopened(t *testing.T) {
	auditFile := filepath.Join(os.TempDir(), "privnix-audit-"+strings.ReplaceAll(t.Name(), "/", "-")+".log")
	os.Remove(auditFile)
	t.Cleanup(func() { os.Remove(auditFile); os.Remove(auditFile + ".1") })
	s := startReloadable(t, skeletonConf, "--audit-log", auditFile)
	s.Run(t, testenv.Alice, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(func() bool {
		b, _ := os.ReadFile(auditFile)
		return strings.Contains(string(b), "configuration reloaded")
	}) {
		t.Fatalf("no reload recorded in a new %s:\n%s", auditFile, s.d.Log.String())
	}
	s.Run(t, testenv.Bob, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	s.d.Stop(t)
	bobUID, _ := userLookup(testenv.Bob)
	aliceUID, _ := userLookup(testenv.Alice)
	if n := countAudit(auditRecords(t, auditFile), "connection accepted"); n != 1 {
		t.Errorf("%d connections in the new file, want bob's only", n)
	}
	for _, r := range auditRecords(t, auditFile) {
		if r["msg"] == "connection accepted" && r["client_uid"] != float64(bobUID) {
			t.Errorf("the new file has %v, want bob's connection", r)
		}
	}
	old := auditRecords(t, auditFile+".1")
	if len(old) != 1 || old[0]["client_uid"] != float64(aliceUID) {
		t.Errorf("the rotated file holds %v, want alice's connection only", old)
	}
	if fi, err := os.Stat(auditFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new audit file: %v, %v; want mode 0600", fi, err)
	}
}
