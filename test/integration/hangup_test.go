package integration

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"privnix/internal/testenv"
)

// A connection's temporary roots end when its client hangs up, even while
// its frontend has not noticed yet (here: it is stopped): `nix-store --add`
// then `nix-store --delete` of the same path, back to back, must not find
// the path "still alive" because of the first, finished command.
func TestTempRootsEndWithTheClient(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	d := testenv.StartPrivnixd(t, s)

	c := dialRaw(t, s.SocketPath)
	p, err := c.addText("hangup", "held until the client hangs up\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`msg="path registered".* frontend_pid=(\d+) .*path=` + regexp.QuoteMeta(p)).FindStringSubmatch(d.Log.String())
	if m == nil {
		t.Fatalf("no registration of %s with its frontend in the daemon log:\n%s", p, d.Log.String())
	}
	fe, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(fe, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(fe, syscall.SIGCONT)

	// While the client is connected its root holds, frontend stopped or not.
	r := s.Run(t, testenv.Alice, nil, "nix-store", "--delete", p)
	if r.Err == nil || !strings.Contains(r.Stderr, "Cannot delete path '"+p+"' since it is still alive") {
		t.Fatalf("deleting a path a connected client holds: %v %s", r.Err, r.Stderr)
	}
	c.close()
	r = s.Run(t, testenv.Alice, nil, "nix-store", "--delete", p)
	if r.Err != nil || !strings.Contains(r.Stdout+r.Stderr, "1 store paths deleted") {
		t.Errorf("deleting the path once its client hung up (its frontend still stopped): %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}
