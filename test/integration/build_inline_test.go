package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"privnix/frontend/wire"
	"privnix/internal/nixclient"
	"privnix/internal/testenv"
	"privnix/nix/drv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// inlineRequest is the BuildDerivation the test has a client send as a
// test user (PRIVNIX_TEST_BUILDDRV, see TestMain).
type inlineRequest struct {
	DrvPath string
	Drv     *drv.Derivation
	Mode    uint64
}

// buildDrvClient reads an inlineRequest on stdin, sends it and prints the
// outcome as one line: "refused: <message>" or the BuildResult's status,
// error text (ANSI codes stripped) and built outputs.
func buildDrvClient(sock string) int {
	var req inlineRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Println("bad request:", err)
		return 1
	}
	c, err := nixclient.Dial(sock, wire.V(34))
	if err == nil {
		err = c.SetOptions()
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer c.Close()
	res, err := c.BuildDerivation(req.DrvPath, req.Drv, req.Mode)
	if e, ok := err.(*nixclient.RemoteError); ok {
		fmt.Printf("refused: %q\n", ansi.ReplaceAllString(e.Message, ""))
		return 0
	} else if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	var outs []string
	for _, p := range res.BuiltOutputs {
		outs = append(outs, p.Key+" "+p.Value)
	}
	fmt.Printf("status %d, error %q, outputs %q\n", res.Status, ansi.ReplaceAllString(res.ErrorMsg, ""), outs)
	return 0
}

// sendInline runs buildDrvClient as userName.
func sendInline(t *testing.T, s *testenv.Store, userName string, req inlineRequest) string {
	t.Helper()
	cmd := selfAs(t, userName, "PRIVNIX_TEST_BUILDDRV="+s.SocketPath)
	b, _ := json.Marshal(req)
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("inline client as %s: %v: %s", userName, err, out)
	}
	return strings.TrimSpace(string(out))
}

// inlineDrv is a derivation named name running script, with its output
// path(s) and .drv path computed as Nix would: input-addressed, or
// fixed-output (flat sha256) if fixed is not empty.
func inlineDrv(t *testing.T, dir storepath.Dir, name, script, fixed string) inlineRequest {
	t.Helper()
	env := map[string]string{"builder": "/bin/sh", "name": name, "system": "x86_64-linux"}
	d := &drv.Derivation{Platform: "x86_64-linux", Builder: "/bin/sh", Args: []string{"-c", script}, InputDrvs: []drv.InputDrv{}}
	var out string
	if fixed != "" {
		h := nixhash.Sum(nixhash.SHA256, []byte(fixed))
		p, err := dir.MakeFixedOutput(name, storepath.Flat, h, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		out = dir.String(p)
		d.Outputs = []drv.Output{{Name: "out", Path: out, HashAlgo: "sha256", Hash: h.Base16()}}
		env["outputHash"], env["outputHashAlgo"], env["outputHashMode"] = h.Base16(), "sha256", "flat"
	} else {
		placeholder := string(dir) + "/" + strings.Repeat("0", 32) + "-" + name
		d.Outputs = []drv.Output{{Name: "out", Path: placeholder}}
		env["out"] = placeholder
		d.Env = sortedEnv(env)
		paths, err := drv.OutputPaths(dir, name, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = dir.String(paths["out"])
		d.Outputs[0].Path = out
	}
	env["out"] = out
	d.Env = sortedEnv(env)
	p, err := drv.Path(dir, name, d)
	if err != nil {
		t.Fatal(err)
	}
	return inlineRequest{DrvPath: dir.String(p), Drv: d}
}

func sortedEnv(env map[string]string) []drv.EnvVar {
	var out []drv.EnvVar
	for k, v := range env {
		out = append(out, drv.EnvVar{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b drv.EnvVar) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// inlineScenario sends the BuildDerivation requests of the test and
// returns each outcome.
func inlineScenario(t *testing.T, s *testenv.Store) map[string]string {
	t.Helper()
	dir := storepath.Dir(s.StoreDir)
	ia := inlineDrv(t, dir, "inline-ia", "echo inline > $out", "")
	fixed := inlineDrv(t, dir, "inline-fixed", "echo fixed-content > $out", "fixed-content\n")
	wrong := inlineDrv(t, dir, "inline-wrong", "echo other > $out", "fixed-content\n")
	out := map[string]string{}
	out["input-addressed, untrusted"] = sendInline(t, s, testenv.Alice, ia)
	out["input-addressed, trusted"] = sendInline(t, s, testenv.Bob, ia)
	b, err := os.ReadFile(ia.Drv.Outputs[0].Path)
	out["input-addressed output"] = fmt.Sprintf("%q %v", b, err)
	out["input-addressed, trusted, again"] = sendInline(t, s, testenv.Bob, ia)
	out["fixed-output, untrusted"] = sendInline(t, s, testenv.Alice, fixed)
	out["wrong fixed-output, untrusted"] = sendInline(t, s, testenv.Alice, wrong)
	return out
}

// TestBuildDerivation: BuildDerivation (op 36) with a derivation handed
// over inline: an untrusted user may build a fixed-output one (and gets
// Nix's hash mismatch), not an input-addressed one ("you are not
// privileged to build input-addressed derivations"); a trusted user may.
// privnixd's answers equal nix-daemon 2.8's.
func TestBuildDerivation(t *testing.T) {
	s, _ := newBuildStore(t, buildConf)
	testenv.StartPrivnixd(t, s)
	got := inlineScenario(t, s)
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	want := inlineScenario(t, s)
	nd.Stop(t)
	for step, w := range want {
		if got[step] != w {
			t.Errorf("%s:\nprivnixd:   %s\nnix-daemon: %s", step, got[step], w)
		}
	}
	if !strings.Contains(got["input-addressed, untrusted"], "you are not privileged to build input-addressed derivations") ||
		!strings.HasPrefix(got["input-addressed output"], `"inline\n"`) || !strings.HasPrefix(got["fixed-output, untrusted"], "status 0,") {
		t.Errorf("privnixd: %q", got)
	}
	for k, v := range got {
		t.Logf("%s: %s", k, v)
	}
}
