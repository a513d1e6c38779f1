package msg

import (
	"strings"
	"testing"
)

func sampleBuildJob() *BuildJob {
	return &BuildJob{
		Builder:    "/nix/store/0i6ardx43rdg24ab1nc3mq7f5ykyiamb-bash/bin/bash",
		Args:       Strings{"-e", "builder.sh"},
		Env:        KVs{{Key: "out", Value: string(testP1)}, {Key: "PATH", Value: "/path-not-set"}, {Key: "empty", Value: ""}},
		InputPaths: StorePaths{testP2},
		Outputs:    BuildOutputs{{Name: "out", Path: testP1}},
		StoreDir:   testDir,
		UID:        30001, GID: 30000,
		Sandbox:      SandboxOn,
		SandboxPaths: SandboxPathList{{Target: "/bin/sh", Source: "/nix/store/0i6ardx43rdg24ab1nc3mq7f5ykyiamb-bash/bin/bash"}, {Target: "/dev/kvm", Source: "/dev/kvm", Optional: true}},
		Network:      true,
		BuildTop:     "/build",
		Files:        BuildFiles{{Name: ".attr-1bp7cri8hplaz6hbz0v4f0nl44rl84q1sg25kgwqzipzd1mv89ic", Data: "\x00\xffbytes"}},
		More:         true,
	}
}

func TestBuildValidate(t *testing.T) {
	job := func(f func(*BuildJob)) *BuildJob {
		m := sampleBuildJob()
		f(m)
		return m
	}
	for _, tc := range []struct {
		name string
		m    Message
		ok   bool
	}{
		{"sample", job(func(*BuildJob) {}), true},
		{"sandbox off in /tmp", job(func(m *BuildJob) { m.Sandbox, m.BuildTop = SandboxOff, "/tmp/nix-build-x.drv-0" }), true},
		{"sandbox off /build", job(func(m *BuildJob) { m.Sandbox = SandboxOff }), false},
		{"sandbox off deep in /tmp", job(func(m *BuildJob) { m.Sandbox, m.BuildTop = SandboxOff, "/tmp/a/b" }), false},
		{"sandbox mode 3", job(func(m *BuildJob) { m.Sandbox = 3 }), false},
		{"uid 0", job(func(m *BuildJob) { m.UID = 0 }), false},
		{"gid 0", job(func(m *BuildJob) { m.GID = 0 }), false},
		{"relative builder", job(func(m *BuildJob) { m.Builder = "bin/sh" }), false},
		{"unclean builder", job(func(m *BuildJob) { m.Builder = "/bin/../sh" }), false},
		{"build top /", job(func(m *BuildJob) { m.BuildTop = "/" }), false},
		{"build top in the store", job(func(m *BuildJob) { m.BuildTop = testDir + "/x" }), false},
		{"build top above the store", job(func(m *BuildJob) { m.BuildTop = "/nix" }), false},
		{"no outputs", job(func(m *BuildJob) { m.Outputs = nil }), false},
		{"output elsewhere", job(func(m *BuildJob) { m.Outputs[0].Path = "/other/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello" }), false},
		{"repeated output", job(func(m *BuildJob) { m.Outputs = append(m.Outputs, BuildOutput{Name: "out", Path: testP2}) }), false},
		{"input elsewhere", job(func(m *BuildJob) { m.InputPaths = StorePaths{"/other/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello"} }), false},
		{"env key with =", job(func(m *BuildJob) { m.Env[0].Key = "a=b" }), false},
		{"env empty key", job(func(m *BuildJob) { m.Env[0].Key = "" }), false},
		{"env NUL value", job(func(m *BuildJob) { m.Env[0].Value = "a\x00b" }), false},
		{"env value too long", job(func(m *BuildJob) { m.Env[0].Value = strings.Repeat("v", MaxArgStrLen) }), false},
		{"arg with NUL", job(func(m *BuildJob) { m.Args = Strings{"a\x00"} }), false},
		{"sandbox path relative", job(func(m *BuildJob) { m.SandboxPaths[0].Source = "bin" }), false},
		{"sandbox path at /", job(func(m *BuildJob) { m.SandboxPaths[0].Target = "/" }), false},
		{"file with slash", job(func(m *BuildJob) { m.Files[0].Name = "../x" }), false},
		{"file dotdot", job(func(m *BuildJob) { m.Files[0].Name = ".." }), false},
		{"more ok", &BuildJobMore{InputPaths: StorePaths{testP1}, Files: BuildFiles{{Name: "a", Data: "b"}}}, true},
		{"more bad env", &BuildJobMore{Env: KVs{{Key: "", Value: "x"}}}, false},
		{"failed ok", &SandboxFailed{Stage: "mount", Errno: 1}, true},
		{"failed errno", &SandboxFailed{Stage: "mount", Errno: 5000}, false},
		{"failed stage newline", &SandboxFailed{Stage: "a\nb"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
