package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// parseCLI parses args with the real command tree, as main does.
func parseCLI(t *testing.T, args ...string) *CLI {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("privnix"), kong.Exit(func(int) { t.Fatalf("kong exited on %q", args) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return &cli
}

func uniqueName(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return prefix + string(b)
}

// privateStore makes an empty private store root with nix.conf and returns
// a getenv for it.
func privateStore(t *testing.T, nixConf string) (root string, getenv func(string) string) {
	t.Helper()
	root = t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	env := map[string]string{
		"NIX_STORE_DIR": filepath.Join(root, "store"),
		"NIX_STATE_DIR": filepath.Join(root, "var", "nix"),
		"NIX_LOG_DIR":   filepath.Join(root, "var", "log", "nix"),
		"NIX_CONF_DIR":  filepath.Join(root, "etc"),
	}
	os.MkdirAll(env["NIX_CONF_DIR"], 0o755)
	if err := os.WriteFile(filepath.Join(env["NIX_CONF_DIR"], "nix.conf"), []byte(nixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, func(k string) string { return env[k] }
}

func removeUsersAfter(t *testing.T, group string, n int, extraGroups ...string) {
	t.Cleanup(func() {
		for i := 1; i <= n; i++ {
			exec.Command("userdel", group+strconv.Itoa(i)).Run()
		}
		for _, g := range append([]string{group}, extraGroups...) {
			exec.Command("groupdel", g).Run()
		}
	})
}

// fakeInstall puts root-owned stand-ins for privnixd and its children in a
// directory of their own.
func fakeInstall(t *testing.T) (privnixd, libexec string) {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	libexec = filepath.Join(dir, "libexec")
	os.Mkdir(libexec, 0o755)
	privnixd = filepath.Join(dir, "privnixd")
	for _, f := range []string{privnixd, filepath.Join(libexec, "privnix-frontend")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return privnixd, libexec
}

// On a fresh private store, `privnix setup` then `privnix doctor` passes;
// a second setup has nothing to do; --dry-run printed what setup then did.
func TestSetupThenDoctor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (make test does): setup creates users")
	}
	g, sg := uniqueName("pnxt"), uniqueName("pnxw")
	removeUsersAfter(t, g, 3, sg)
	_, getenv := privateStore(t, "build-users-group = "+g+"\nmax-jobs = 3\nallowed-users = @"+sg+"\n")
	privnixd, libexec := fakeInstall(t)

	var dry, out, errb bytes.Buffer
	setupArgs := []string{"setup", "--build-users", "3", "--socket-group", sg}
	if err := parseCLI(t, append(setupArgs, "--dry-run")...).Setup.run(&dry, &errb, getenv); err != nil {
		t.Fatalf("setup --dry-run: %v\n%s", err, errb.String())
	}
	if err := parseCLI(t, setupArgs...).Setup.run(&out, &errb, getenv); err != nil {
		t.Fatalf("setup: %v\n%s%s", err, out.String(), errb.String())
	}
	// Every command the dry run printed is what setup ran.
	var ran []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if c, ok := strings.CutPrefix(l, "+ "); ok {
			ran = append(ran, c)
		}
	}
	var planned []string
	for _, l := range strings.Split(strings.TrimSpace(dry.String()), "\n") {
		if c, _, ok := strings.Cut(l, "\t# "); ok {
			planned = append(planned, c)
		}
	}
	if strings.Join(ran, "\n") != strings.Join(planned, "\n") || len(ran) < 10 {
		t.Errorf("setup ran:\n%s\n--dry-run printed:\n%s", strings.Join(ran, "\n"), strings.Join(planned, "\n"))
	}
	out.Reset()
	if err := parseCLI(t, setupArgs...).Setup.run(&out, &errb, getenv); err != nil || !strings.Contains(out.String(), "nothing to do") {
		t.Errorf("second setup: %v\n%s", err, out.String())
	}

	out.Reset()
	doc := parseCLI(t, "doctor", "--json", "--privnixd", privnixd, "--libexec", libexec).Doctor
	if code := doc.run(&out, &errb, getenv); code != 0 {
		t.Fatalf("doctor after setup: exit %d\n%s", code, out.String())
	}
	var rep struct {
		Status   string
		Checks   []struct{ ID string }
		Findings []any
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Status != "ok" || len(rep.Checks) < 20 || len(rep.Findings) != 0 {
		t.Fatalf("doctor --json: %v\n%s", err, out.String())
	}
}

// doctor's text and JSON forms and exit codes on a broken store.
func TestDoctorOutput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (make test does): setup creates users")
	}
	g := uniqueName("pnxt")
	removeUsersAfter(t, g, 1)
	root, getenv := privateStore(t, "build-users-group = "+g+"\nmax-jobs = 1\n")
	privnixd, libexec := fakeInstall(t)
	var out, errb bytes.Buffer
	if err := parseCLI(t, "setup", "--build-users", "1").Setup.run(&out, &errb, getenv); err != nil {
		t.Fatalf("setup: %v\n%s", err, out.String())
	}
	for _, tc := range []struct {
		name     string
		conf     string
		args     []string
		code     int
		contains string
	}{
		{"text, error", "build-users-group = " + g + "\nmax-jobs = 1\nsandbox = false\n", nil, 2,
			"error [sandbox-off] sandbox = false"},
		{"text, warning only", "build-users-group = " + g + "\nmax-jobs = 1\nno-such = 1\n", nil, 1,
			"0 error(s), 1 warning(s)"},
		{"json, error", "build-users-group = " + g + "\nmax-jobs = 1\nrequire-sigs = false\n", []string{"--json"}, 2,
			`"check": "require-sigs-off"`},
		{"settings do not load", "max-jobs = lots\n", []string{"--json"}, 3, `"status":"error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(root, "etc", "nix.conf"), []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			args := append([]string{"doctor", "--privnixd", privnixd, "--libexec", libexec}, tc.args...)
			code := parseCLI(t, args...).Doctor.run(&out, &errb, getenv)
			if code != tc.code || !strings.Contains(out.String(), tc.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.contains, out.String())
			}
		})
	}
}

// The bash completion script, generated from the real command tree, run by
// bash on typed command lines.
func TestCompletionBash(t *testing.T) {
	var cli CLI
	p, err := kong.New(&cli, kong.Name("privnix"))
	if err != nil {
		t.Fatal(err)
	}
	var script bytes.Buffer
	if err := (&CompleteCmd{Shell: "bash"}).run(&script, p.Model.Node); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "privnix.bash")
	if err := os.WriteFile(file, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // what was typed; the last word is being completed
		want []string
		not  []string
	}{
		{"privnix ", []string{"setup", "doctor", "policy", "completion", "nar"}, []string{"--help"}},
		{"privnix se", []string{"setup"}, []string{"doctor"}},
		{"privnix setup --", []string{"--dry-run", "--socket-group", "--build-users", "--fix-existing", "--help"}, []string{"--json"}},
		{"privnix setup --group nar --dr", []string{"--dry-run"}, nil}, // a flag's value is not a command
		{"privnix setup --socket-group roo", []string{"root"}, nil},
		{"privnix doctor --j", []string{"--json"}, nil},
		{"privnix policy ", []string{"explain"}, nil},
		{"privnix policy explain --user roo", []string{"root"}, nil},
		{"privnix policy explain -g roo", []string{"root"}, nil},
		{"privnix policy explain --user root AddSig", []string{"AddSignatures"}, nil},
		{"privnix policy explain --user root ", []string{"connect", "substitute", "set-option", "BuildDerivation"}, nil},
		{"privnix completion ", []string{"bash", "zsh"}, nil},
		{"privnix hash convert --to ", []string{"nix32", "sri"}, nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			words := strings.Fields(tc.line)
			if strings.HasSuffix(tc.line, " ") {
				words = append(words, "")
			}
			var q []string
			for _, w := range words {
				q = append(q, "'"+w+"'")
			}
			prog := "source " + file + "; COMP_WORDS=(" + strings.Join(q, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) +
				`; _privnix; printf '%s\n' "${COMPREPLY[@]}"`
			out, err := exec.Command("bash", "--norc", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %q lack %q", got, w)
				}
			}
			for _, w := range tc.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %q include %q", got, w)
				}
			}
		})
	}
}

func TestCompletionZshAndErrors(t *testing.T) {
	var cli CLI
	p, err := kong.New(&cli, kong.Name("privnix"))
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	if err := (&CompleteCmd{Shell: "zsh"}).run(&z, p.Model.Node); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#compdef privnix\n", "bashcompinit", "complete -o default -F _privnix privnix\n"} {
		if !strings.Contains(z.String(), want) {
			t.Errorf("zsh script lacks %q", want)
		}
	}
	if err := (&CompleteCmd{Shell: "fish"}).run(&z, p.Model.Node); err == nil {
		t.Error("completion for fish: no error")
	}
	if _, err := p.Parse([]string{"completion", "fish"}); err == nil {
		t.Error("kong accepted `completion fish`")
	}
}
