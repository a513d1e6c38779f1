package msg

import (
	"strings"
	"testing"
)

func TestStoreValidate(t *testing.T) {
	ca := func(f func(*BeginUpload)) *BeginUpload {
		m := &BeginUpload{Mode: UploadCA, Name: "x", CAMethod: "nar", Algo: "sha256", Format: FormatNAR}
		f(m)
		return m
	}
	info := PathInfo{Path: testP1, NarHash: testHash, NarSize: 100}
	imp := func(f func(*BeginUpload)) *BeginUpload {
		m := &BeginUpload{Mode: UploadNar, Info: info, Format: FormatNAR, Size: 100}
		f(m)
		return m
	}
	job := func(f func(*StoreJob)) *StoreJob {
		m := &StoreJob{Format: FormatNAR, MaxBytes: 1 << 20, MaxDepth: 1, MaxEntries: 1, MaxNameLen: 1, MaxTargetLen: 1}
		f(m)
		return m
	}
	for _, tc := range []struct {
		name string
		m    Message
		ok   bool
	}{
		{"ca nar", ca(func(*BeginUpload) {}), true},
		{"ca text", ca(func(m *BeginUpload) { m.CAMethod, m.Format = "text", FormatFlat }), true},
		{"ca flat in a nar", ca(func(m *BeginUpload) { m.CAMethod, m.Algo = "flat", "md5" }), true},
		{"ca flat raw", ca(func(m *BeginUpload) { m.CAMethod, m.Algo, m.Format = "flat", "sha512", FormatFlat }), true},
		{"ca max size", ca(func(m *BeginUpload) { m.Size = MaxUpload }), true},
		{"ca size above 1 TiB", ca(func(m *BeginUpload) { m.Size = MaxUpload + 1 }), false},
		{"ca bad name", ca(func(m *BeginUpload) { m.Name = "a/b" }), false},
		{"ca dot name", ca(func(m *BeginUpload) { m.Name = ".x" }), false},
		{"ca long name", ca(func(m *BeginUpload) { m.Name = strings.Repeat("a", MaxName+1) }), false},
		{"ca bad method", ca(func(m *BeginUpload) { m.CAMethod = "git" }), false},
		{"ca bad algo", ca(func(m *BeginUpload) { m.Algo = "blake3" }), false},
		{"ca empty algo", ca(func(m *BeginUpload) { m.Algo = "" }), false},
		{"ca text sha1", ca(func(m *BeginUpload) { m.CAMethod, m.Algo, m.Format = "text", "sha1", FormatFlat }), false},
		{"ca text as nar", ca(func(m *BeginUpload) { m.CAMethod = "text" }), false},
		{"ca nar as flat", ca(func(m *BeginUpload) { m.Format = FormatFlat }), false},
		{"ca format 3", ca(func(m *BeginUpload) { m.Format = 3 }), false},
		{"ca bad reference", ca(func(m *BeginUpload) { m.References = StorePaths{"/nix/store/x"} }), false},
		{"ca with info", ca(func(m *BeginUpload) { m.Info.NarSize = 1 }), false},
		{"ca with empty sigs list", ca(func(m *BeginUpload) { m.Info.Sigs = Strings{""} }), false},
		{"ca dont check sigs", ca(func(m *BeginUpload) { m.DontCheckSigs = true }), false},
		{"import", imp(func(*BeginUpload) {}), true},
		{"import size unknown", imp(func(m *BeginUpload) { m.Size = 0 }), true},
		{"import size mismatch", imp(func(m *BeginUpload) { m.Size = 101 }), false},
		{"import nar size above 1 TiB", imp(func(m *BeginUpload) { m.Info.NarSize, m.Size = MaxUpload+1, 0 }), false},
		{"import flat", imp(func(m *BeginUpload) { m.Format = FormatFlat }), false},
		{"import with name", imp(func(m *BeginUpload) { m.Name = "x" }), false},
		{"import with method", imp(func(m *BeginUpload) { m.CAMethod = "nar" }), false},
		{"import with algo", imp(func(m *BeginUpload) { m.Algo = "sha256" }), false},
		{"import with references", imp(func(m *BeginUpload) { m.References = StorePaths{testP2} }), false},
		{"import bad hash", imp(func(m *BeginUpload) { m.Info.NarHash = "sha1:0000000000000000000000000000000000000000" }), false},
		{"import no path", imp(func(m *BeginUpload) { m.Info.Path = "" }), false},
		{"import bad ca", imp(func(m *BeginUpload) { m.Info.CA = "git:x" }), false},
		{"mode 0", ca(func(m *BeginUpload) { m.Mode = 0 }), false},
		{"mode 3", imp(func(m *BeginUpload) { m.Mode = 3 }), false},
		{"channel id 0", &UploadChannel{}, false},
		{"finish id 0", &FinishUpload{Written: 1}, false},
		{"finish above 1 TiB", &FinishUpload{ID: 1, Written: MaxUpload + 1}, false},
		{"finish 0 bytes", &FinishUpload{ID: 1}, true},
		{"job", job(func(*StoreJob) {}), true},
		{"job flat no limits", &StoreJob{Format: FormatFlat, MaxBytes: 0}, true},
		{"job more", job(func(m *StoreJob) { m.More = true }), true},
		{"job more shared uid", job(func(m *StoreJob) { m.More, m.SharedUID = true, true }), false},
		{"job format 0", job(func(m *StoreJob) { m.Format = 0 }), false},
		{"job max bytes", job(func(m *StoreJob) { m.MaxBytes = MaxUpload + 1 }), false},
		{"job nar depth 0", job(func(m *StoreJob) { m.MaxDepth = 0 }), false},
		{"job nar entries 0", job(func(m *StoreJob) { m.MaxEntries = 0 }), false},
		{"job depth", job(func(m *StoreJob) { m.MaxDepth = MaxNarDepth + 1 }), false},
		{"job entries", job(func(m *StoreJob) { m.MaxEntries = MaxNarEntries + 1 }), false},
		{"job name 256", job(func(m *StoreJob) { m.MaxNameLen = 256 }), false},
		{"job target 4096", job(func(m *StoreJob) { m.MaxTargetLen = 4096 }), false},
		{"job flat name 256", job(func(m *StoreJob) { m.Format, m.MaxNameLen = FormatFlat, 256 }), false},
		{"staged", &Staged{NarSize: 5, Bytes: 5}, true},
		{"staged size above bytes", &Staged{NarSize: 6, Bytes: 5}, false},
		{"staged above 1 TiB", &Staged{NarSize: 1, Bytes: MaxUpload + 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			// Decode must agree with Validate.
			_, derr := Decode(tc.m.Kind(), mustEncode(t, tc.m))
			if (derr == nil) != tc.ok {
				t.Fatalf("Decode: %v, want ok=%v", derr, tc.ok)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestStoreKinds(t *testing.T) {
	for _, s := range Specs() {
		switch {
		case s.Kind >= 0x0210 && s.Kind <= 0x022f, s.Kind >= 0x0300 && s.Kind <= 0x03ff:
			if !strings.Contains("BeginUpload UploadChannel FinishUpload StoreJob Staged ParseDrv Drv", s.Name) {
				t.Errorf("%s (%#04x) in the upload/storeproc ranges", s.Name, uint16(s.Kind))
			}
		}
	}
	for _, k := range []Kind{KindUploadChannel, KindStoreJob, KindStaged} {
		if !k.IsAnswer() {
			t.Errorf("%s is not an answer kind", k)
		}
	}
	for _, k := range []Kind{KindBeginUpload, KindFinishUpload} {
		if k.IsAnswer() {
			t.Errorf("%s is an answer kind", k)
		}
	}
	for k, fds := range map[Kind]int{KindBeginUpload: 0, KindUploadChannel: 1, KindFinishUpload: 0, KindStoreJob: 2, KindStaged: 0} {
		if s, _ := Lookup(k); s.Fds != fds {
			t.Errorf("%s carries %d fds, want %d", k, s.Fds, fds)
		}
	}
}
