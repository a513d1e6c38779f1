package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// queryHolder is the test binary run with PRIVNIX_TEST_QUERY=<socket>: one
// connection, kept open, answering "valid PATH", "info PATH" and
// "referrers PATH" lines read
// from stdin with one line each on stdout. A frontend caches answers per
// connection: this is the connection that would see a stale one.
func queryHolder(sock string) int {
	c := dialHolder(sock)
	if c == nil {
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		op, p, _ := strings.Cut(in.Text(), " ")
		switch op {
		case "valid":
			ok, err := c.IsValidPath(p)
			fmt.Println(ok, err)
		case "referrers":
			rs, err := c.QueryReferrers(p)
			fmt.Println(strings.Join(rs, ","), err)
		case "info":
			info, err := c.QueryPathInfo(p)
			switch {
			case err != nil:
				fmt.Println("error:", err)
			case info == nil:
				fmt.Println("invalid")
			default:
				fmt.Println(info.NarHash, info.NarSize, strings.Join(info.References, ","), info.Deriver, info.CA)
			}
		}
	}
	c.Close()
	return 0
}

const cacheChainNix = `{ seed }:
let f = i: if i == 0 then builtins.toFile "q-${seed}-0" "root ${seed}"
           else builtins.toFile "q-${seed}-${toString i}" "${f (i - 1)} ${toString i}";
in { first = f 0; middle = f 1; last = f 2; }
`

// A connection that asked about paths before sees every change made since by
// other connections (adds, deletions, re-adds), for validity, path infos and
// referrers, including what its frontend fetched ahead along references and
// referrers; the answers equal nix-daemon's.
func TestQueriesSeeOtherConnectionsWrites(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "chain.nix"), []byte(cacheChainNix), 0o644); err != nil {
		t.Fatal(err)
	}
	nd := testenv.StartNixDaemon(t, s)
	want := cacheScenario(t, s, in)
	nd.Stop(t)
	s.Reset(t)
	testenv.StartPrivnixd(t, s)
	got := cacheScenario(t, s, in)
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			t.Errorf("%s: privnixd %q, nix-daemon %q", k, got[k], want[k])
		}
	}
}

func cacheScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := func(step string, args ...string) string {
		t.Helper()
		r := s.Run(t, testenv.Alice, nil, args[0], args[1:]...)
		if r.Err != nil {
			t.Fatalf("%s: %v: %v\n%s", step, args, r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	var chain struct{ First, Middle, Last string }
	instantiate := func(step string) {
		t.Helper()
		js := run(step, "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode",
			filepath.Join(in, "chain.nix"), "--argstr", "seed", "s")
		if err := json.Unmarshal([]byte(js), &chain); err != nil {
			t.Fatalf("%s: %q: %v", step, js, err)
		}
	}
	instantiate("add chain")

	cmd := selfAs(t, testenv.Alice, "PRIVNIX_TEST_QUERY="+s.SocketPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	answers := bufio.NewReader(stdout)
	if line, _ := answers.ReadString('\n'); line != "ready\n" {
		t.Fatalf("query holder: %q", line)
	}
	ask := func(step, q string) string {
		t.Helper()
		io.WriteString(stdin, q+"\n")
		line, err := answers.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %s: %v", step, q, err)
		}
		a := strings.TrimSpace(line)
		// Store paths differ between runs only if the store directory does.
		out[step+": "+strings.ReplaceAll(q, s.StoreDir, "<store>")] = strings.ReplaceAll(a, s.StoreDir, "<store>")
		return a
	}
	expect := func(step, q, want string) {
		t.Helper()
		if a := ask(step, q); a != want {
			t.Errorf("%s: %s = %q, want %q", step, q, a, want)
		}
	}
	walk := func(step string) {
		t.Helper()
		// Last first, then down its references (a client computing a closure).
		for _, p := range []string{chain.Last, chain.Middle, chain.First} {
			if a := ask(step, "info "+p); strings.HasPrefix(a, "invalid") || strings.HasPrefix(a, "error") {
				t.Errorf("%s: info %s = %q", step, p, a)
			}
		}
	}
	back := func(step string, wantLast bool) {
		t.Helper()
		// First up its referrers (a client computing a referrers closure).
		want := map[string]string{chain.First: chain.Middle, chain.Middle: chain.Last, chain.Last: ""}
		if !wantLast {
			want[chain.Middle] = ""
		}
		for _, p := range []string{chain.First, chain.Middle, chain.Last} {
			if !wantLast && p == chain.Last {
				break
			}
			expect(step, "referrers "+p, strings.TrimSpace(want[p]+" <nil>"))
		}
	}
	expect("valid", "valid "+chain.Last, "true <nil>")
	walk("valid")
	back("valid", true)
	expect("valid again", "valid "+chain.Last, "true <nil>")

	run("delete last", "nix-store", "--delete", chain.Last)
	expect("after delete", "valid "+chain.Last, "false <nil>")
	expect("after delete", "info "+chain.Last, "invalid")
	expect("after delete", "valid "+chain.Middle, "true <nil>")
	back("after delete", false)

	instantiate("re-add chain")
	expect("after re-add", "valid "+chain.Last, "true <nil>")
	walk("after re-add")
	back("after re-add", true)

	run("delete chain", "nix-store", "--delete", chain.Last, chain.Middle, chain.First)
	for _, p := range []string{chain.Last, chain.Middle, chain.First} {
		expect("after delete chain", "info "+p, "invalid")
		expect("after delete chain", "valid "+p, "false <nil>")
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
