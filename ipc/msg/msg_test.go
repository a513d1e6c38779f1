package msg

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

const (
	testDir  = "/nix/store"
	testHash = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	testP1   = StorePath("/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-hello-2.12.1")
	testP2   = StorePath("/nix/store/0i6ardx43rdg24ab1nc3mq7f5ykyiamb-glibc-2.39-52")
	testDrv  = StorePath("/nix/store/qd5f8yds7h8pi7jqbsd5d7sr4jxhsdr2-hello-2.12.1.drv")
)

// samples holds one valid message of every registered kind; TestSamplesCover
// fails when a kind is added without one.
var samples = []Message{
	&Error{Class: ClassPolicy, Message: "you may not do that"},
	&OK{},
	&Hello{},
	&HelloOK{Uid: 1000, Trusted: true, User: "alice", StoreDir: testDir, NixVersion: "2.24.0", MaxVerbosity: LevelDebug},
	&Log{Level: LevelInfo, Msg: "hello\x00\xff", Attrs: Attrs{{Key: "path", Value: string(testP1)}}},
	&IsValidPath{Path: testP1},
	&Bool{V: true},
	&QueryPathInfo{Path: testP1},
	&PathInfo{
		Path: testP1, Deriver: testDrv, NarHash: testHash,
		References: StorePaths{testP1, testP2}, RegistrationTime: 1700000000, NarSize: 123456,
		Ultimate: true, Sigs: Strings{"cache.nixos.org-1:dGVzdA=="}, CA: "fixed:r:" + testHash,
	},
	&QueryPaths{Op: PathsValid, Paths: StorePaths{testP1, testP2}, Substitute: true},
	&Paths{Paths: StorePaths{testP1}, More: true},
	&AddTempRoot{Path: testP2},
	&OpenGeneration{},
	&QueryReferrers{Paths: StorePaths{testP1}, Closure: 5},
	&Referrers{Entries: ReferrersList{{Path: testP1, Referrers: StorePaths{testP1, testP2}}, {Path: testP2}}, More: true},
	&Generation{},
	&QueryPathInfos{Paths: StorePaths{testP1, testP2}, Closure: 100},
	&PathInfos{Infos: PathInfoList{{Path: testP1, NarHash: testHash, References: StorePaths{testP2}, NarSize: 7},
		{Path: testP2, Deriver: testDrv, NarHash: testHash, NarSize: 9, Sigs: Strings{"k:AA=="}, CA: "fixed:r:" + testHash}}, More: true},
	&AddSignatures{Path: testP1, Sigs: Strings{"cache.nixos.org-1:dGVzdA=="}},
	&AddIndirectRoot{Link: "/home/alice/result"},
	&SyncWithGC{},
	&SetOptions{Overrides: Overrides{{Name: "substituters", Value: "https://example.org"}}, MaxJobs: 2, Cores: 4},
	&Warnings{Texts: Strings{"ignoring untrusted substituter 'https://example.org'"}},
	&CollectGarbage{Action: GCDeleteSpecific, Paths: StorePaths{testP1, testP2}, MaxFreed: 1 << 20},
	&GCResult{Paths: StorePaths{testP1}, BytesFreed: 4096, LinksSaved: -4096},
	&FindRoots{},
	&VerifyStore{CheckContents: true, Repair: true},
	&Verified{Findings: FindingList{{What: FoundModified, Path: testP1, Expected: testHash, Got: testHash},
		{What: FoundLinkModified, Link: "0rwl2xc06gfz4g9s4xdxha1ifrk753sb6qqi07yaxfy233n4ak2r", Got: testHash}}, Errors: true, More: true},
	&OptimiseStore{},
	&Optimised{FilesLinked: 3, BytesFreed: 4096},
	&Roots{Roots: RootList{{Link: "/home/alice/result", Path: testP1}, {Link: "{censored}", Path: testP2}}, More: true},
	&Session{HelloOK: HelloOK{Uid: 1000, User: "alice", StoreDir: testDir, NixVersion: "2.24.0"}},
	&BeginUpload{Mode: UploadCA, Name: "hello.txt", CAMethod: "flat", Algo: "sha1", References: StorePaths{testP2}, Format: FormatFlat, Size: 12},
	&BeginUpload{
		Mode: UploadNar, Format: FormatNAR, Size: 123456, Repair: true, DontCheckSigs: true,
		Info: PathInfo{Path: testP1, Deriver: testDrv, NarHash: testHash, References: StorePaths{testP2}, NarSize: 123456, Sigs: Strings{"k:AA=="}},
	},
	&UploadChannel{ID: 7},
	&FinishUpload{ID: 7, Written: 123456},
	&StoreJob{Format: FormatNAR, MaxBytes: 1 << 30, MaxDepth: 256, MaxEntries: 1 << 22, MaxNameLen: 255, MaxTargetLen: 4095, More: true},
	&Staged{NarSize: 123456, Bytes: 123456},
	sampleBuildJob(),
	&BuildJobMore{Env: KVs{{Key: "big", Value: "x"}}, InputPaths: StorePaths{testP2}, Files: BuildFiles{{Name: ".attrs.json", Data: "{}"}}},
	&SandboxReady{},
	&SandboxFailed{Stage: "mount-inputs", Errno: 2, Message: "input path vanished"},
	&ParseDrv{MaxSize: 1 << 20},
	&Drv{Outputs: DrvOutputList{{Name: "out", Path: string(testP1)}}, InputDrvs: DrvInputList{{Path: string(testDrv), Outputs: DrvStrings{"out"}}},
		InputSrcs: DrvStrings{string(testP2)}, Platform: "x86_64-linux", Builder: "/bin/sh", Args: DrvStrings{"-c", "echo"},
		Env: DrvEnvList{{Key: "out", Value: string(testP1)}}, More: true},
	&QueryDrvOutputs{Path: testDrv},
	&DrvOutputs{Names: Strings{"out"}, Paths: StorePaths{testP1}},
	&Build{Targets: BuildTargets{{Path: testDrv, Built: true, Outputs: Strings{"out"}}, {Path: testP1}}, Mode: BuildModeNormal},
	&BuildEvent{Type: EventLine, Drv: testDrv, Text: "building"},
	&BuildEvent{Type: EventSubstStart, Drv: testDrv, Text: "file:///cache"},
	&BuildDerivation{DrvPath: testDrv, Mode: BuildModeCheck, Drv: Drv{Outputs: DrvOutputList{{Name: "out", Path: string(testP1)}},
		InputSrcs: DrvStrings{string(testP2)}, Platform: "x86_64-linux", Builder: "/bin/sh", Args: DrvStrings{"-c", "true"},
		Env: DrvEnvList{{Key: "out", Value: string(testP1)}}}},
	&QueryMissing{Targets: BuildTargets{{Path: testDrv, Built: true}}},
	&Missing{WillBuild: StorePaths{testDrv}, Unknown: StorePaths{testP1}, WillSubstitute: StorePaths{testP2}, DownloadSize: 10, NarSize: 20},
	&FetchJob{Caches: Strings{"https://cache.example.org", "file:///srv/cache"}, StoreDir: "/nix/store", ConnectTimeout: 5, SharedUID: true},
	&CacheInfos{Infos: CacheInfoList{{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40}, {Err: "cache unreachable"}}},
	&GetNarInfo{Cache: 1, HashPart: "qd5f8yds7h8pi7jqbsd5d7sr4jxhsdr2"},
	&NarInfo{Found: true, StorePath: testP1, URL: "nar/abc.nar.xz", Compression: "xz", FileHash: testHash, FileSize: 100,
		NarHash: testHash, NarSize: 123456, References: StorePaths{testP1, testP2}, Deriver: testDrv, Sigs: Strings{"k:AA=="}},
	&GetNar{Cache: 0, URL: "nar/abc.nar.xz", Compression: "xz", FileSize: 100, NarSize: 123456},
	&NarSent{FileBytes: 100, NarBytes: 123456},
	&QuerySubstitutable{Paths: StorePaths{testP1, testP2}, Infos: true},
	&Substitutable{Infos: SubstInfoList{{Path: testP1, Deriver: testDrv, References: StorePaths{testP2}, DownloadSize: 10, NarSize: 20}}, More: true},
	&StatusRequest{},
	&Status{Connections: StatusConns{{UID: 1000, PID: 42, User: "alice", FrontendPID: 43, FrontendUID: 1879048193, Since: 1700000000}},
		Builds:  StatusBuilds{{Drv: testDrv, BuildUser: "nixbld1", BuildUID: 30001, ClientUID: 1000, ClientPID: 42, Since: 1700000001}},
		Version: "2.8.0-privnix.0.1", Started: 1700000000, StorePaths: 12, NarBytes: 123456},
	&BuildResults{Results: BuildResultList{{Status: 0, TimesBuilt: 1, StartTime: 1, StopTime: 2, OutputNames: Strings{"out"}, OutputPaths: StorePaths{testP1}}}},
}

func TestSamplesCover(t *testing.T) {
	have := map[Kind]bool{}
	for _, m := range samples {
		have[m.Kind()] = true
	}
	for _, s := range Specs() {
		if !have[s.Kind] {
			t.Errorf("no sample for %s", s.Name)
		}
	}
}

func TestRegistry(t *testing.T) {
	for _, s := range Specs() {
		m := s.New()
		if m.Kind() != s.Kind || reflect.TypeOf(m).Elem().Name() != s.Name {
			t.Errorf("%s: New() gives %T kind %v", s.Name, m, m.Kind())
		}
		if s.Kind.String() != s.Name {
			t.Errorf("%s: String() = %q", s.Name, s.Kind.String())
		}
		// Every message type must be as_array, and hold no interface,
		// map, float or unbounded slice.
		checkType(t, s.Name, reflect.TypeOf(m).Elem())
	}
	if got := Kind(0xfffe).String(); got != "Kind(0xfffe)" {
		t.Errorf("unknown kind prints %q", got)
	}
	if _, ok := Lookup(0xfffe); ok {
		t.Error("Lookup of an unknown kind succeeded")
	}
}

var customDecoder = reflect.TypeFor[msgpack.CustomDecoder]()

func checkType(t *testing.T, name string, typ reflect.Type) {
	t.Helper()
	switch typ.Kind() {
	case reflect.Struct:
		f, ok := typ.FieldByName("_msgpack")
		if !ok || !strings.Contains(string(f.Tag), "as_array") {
			t.Errorf("%s: struct %s is not as_array", name, typ)
		}
		for i := 0; i < typ.NumField(); i++ {
			if ft := typ.Field(i); ft.IsExported() {
				checkType(t, name+"."+ft.Name, ft.Type)
			}
		}
	case reflect.Slice:
		if !reflect.PointerTo(typ).Implements(customDecoder) {
			t.Errorf("%s: slice %s has no bounded decoder", name, typ)
		}
		checkType(t, name+"[]", typ.Elem())
	case reflect.String, reflect.Bool,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
	default:
		t.Errorf("%s: field type %s not allowed (use integers, string, bool, as_array structs, bounded lists)", name, typ)
	}
}

func TestBuildRegistryRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tables [][]Spec
	}{
		{"duplicate", [][]Spec{{row[OK](0)}, {row[OK](0)}}},
		{"fds", [][]Spec{{row[OK](MaxFds + 1)}}},
		{"kind", [][]Spec{{{Kind: 0x42, Name: "X", New: func() Message { return &OK{} }}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			buildRegistry(tc.tables)
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples {
		t.Run(m.Kind().String(), func(t *testing.T) {
			if err := m.Validate(); err != nil {
				t.Fatalf("sample invalid: %v", err)
			}
			body, err := Encode(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(m.Kind(), body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("got %#v, want %#v", got, m)
			}
			if err := CheckStoreDir(got, testDir); err != nil {
				t.Errorf("CheckStoreDir: %v", err)
			}
		})
	}
}

// raw builds a body from msgpack pieces.
func raw(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			b = append(b, p...)
		case byte:
			b = append(b, p)
		case int:
			b = append(b, byte(p))
		case rune:
			b = append(b, byte(p))
		case string:
			b = append(b, 0xd9, byte(len(p)))
			b = append(b, p...)
		default:
			panic(p)
		}
	}
	return b
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	million := []byte{0xdd, 0x00, 0x0f, 0x42, 0x40}
	long := strings.Repeat("x", MaxText+1)
	for _, tc := range []struct {
		name string
		kind Kind
		body []byte
		want error // nil: any error
	}{
		{"unknown kind", 0x7ffe, raw(0x90), ErrUnknownKind},
		{"answer kind unknown", 0x7fff, raw(0x90), ErrUnknownKind},
		{"empty", KindOK, nil, ErrMalformed},
		{"oversize", KindLog, append(raw(0x93, 0, 0xdb, 0, 2, 0, 0), make([]byte, MaxBody)...), ErrTooLarge},
		{"not an array", KindOK, raw(0xc0), ErrMalformed},
		{"map body", KindIsValidPath, mustEncode(t, map[string]string{"Path": string(testP1)}), ErrMalformed},
		{"arity short", KindIsValidPath, raw(0x90), ErrMalformed},
		{"arity long", KindIsValidPath, raw(0x92, string(testP1), string(testP1)), ErrMalformed},
		{"arity of empty", KindOK, raw(0x91, 0), ErrMalformed},
		{"trailing", KindOK, raw(0x90, 0x00), ErrMalformed},
		{"truncated", KindIsValidPath, raw(0x91, 0xd9, 40, 'x'), ErrMalformed},
		{"float", KindLog, raw(0x93, 0xca, 0, 0, 0, 0, "m", 0x90), ErrMalformed},
		{"ext", KindLog, raw(0x93, 0xd4, 1, 1, "m", 0x90), ErrMalformed},
		{"code c1", KindLog, raw(0x93, 0xc1, "m", 0x90), ErrMalformed},
		{"deep", KindLog, raw(0x93, 0, "m", 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90), ErrMalformed},
		{"huge list", KindPaths, raw(0x92, million, 0xc2), ErrMalformed},
		{"wrong type", KindBool, raw(0x91, 1), ErrMalformed},
		{"string for int", KindLog, raw(0x93, "x", "m", 0x90), ErrMalformed},
		{"level range", KindLog, raw(0x93, 8, "m", 0x90), nil},
		{"level narrowing", KindLog, raw(0x93, 0xcd, 0x01, 0x00, "m", 0x90), nil}, // 256 would be 0 as uint8
		{"negative uint", KindLog, raw(0x93, 0xff, "m", 0x90), nil},               // -1 is 2^64-1
		{"class 0", KindError, raw(0x92, 0, "m"), nil},
		{"class 5", KindError, raw(0x92, 5, "m"), nil},
		{"long message", KindError, mustEncode(t, &Error{Class: 1, Message: long}), nil},
		{"gc action 4", KindCollectGarbage, mustEncode(t, &CollectGarbage{Action: 4}), nil},
		{"gc paths without delete", KindCollectGarbage, mustEncode(t, &CollectGarbage{Action: GCDeleteDead, Paths: StorePaths{testP1}}), nil},
		{"gc bytes before the end", KindGCResult, mustEncode(t, &GCResult{BytesFreed: 1, More: true}), nil},
		{"root link relative", KindRoots, mustEncode(t, &Roots{Roots: RootList{{Link: "result", Path: testP1}}}), nil},
		{"root link NUL", KindRoots, mustEncode(t, &Roots{Roots: RootList{{Link: "/a\x00b", Path: testP1}}}), nil},
		{"root path outside", KindRoots, mustEncode(t, &Roots{Roots: RootList{{Link: "/r", Path: "/etc/passwd"}}}), nil},
		{"negative time", KindPathInfo, func() []byte {
			p := *samples[8].(*PathInfo)
			p.RegistrationTime = -1
			return mustEncode(t, &p)
		}(), nil},
		{"too many sigs", KindPathInfo, func() []byte {
			p := *samples[8].(*PathInfo)
			p.Sigs = make(Strings, MaxSigs+1)
			for i := range p.Sigs {
				p.Sigs[i] = "k:AA=="
			}
			return mustEncode(t, &p)
		}(), nil},
		{"list above max", KindPaths, func() []byte {
			b := raw(0x92, 0xdd, 0, 0, byte((MaxPaths+1)>>8), byte((MaxPaths+1)&0xff))
			for i := 0; i < MaxPaths+1; i++ {
				b = append(b, 0xa0)
			}
			return append(b, 0xc2)
		}(), nil},
		{"bad path", KindIsValidPath, raw(0x91, "/nix/store/x"), nil},
		{"attr key", KindLog, raw(0x93, 0, "m", 0x91, 0x92, "a b", "v"), nil},
		{"too many attrs", KindLog, func() []byte {
			b := raw(0x93, 0, "m", 0x90+MaxAttrs+1)
			for i := 0; i <= MaxAttrs; i++ {
				b = append(b, raw(0x92, "k", "v")...)
			}
			return b
		}(), nil},
		{"attr arity", KindLog, raw(0x93, 0, "m", 0x91, 0x93, "k", "v", "w"), ErrMalformed},
		{"unknown op", KindQueryPaths, mustEncode(t, &QueryPaths{Op: 9}), nil},
		{"op all with paths", KindQueryPaths, mustEncode(t, &QueryPaths{Op: PathsAll, Paths: StorePaths{testP1}}), nil},
		{"hash part missing", KindQueryPaths, mustEncode(t, &QueryPaths{Op: PathsByHashPart}), nil},
		{"hello uid", KindHelloOK, mustEncode(t, &HelloOK{Uid: 1 << 32, StoreDir: testDir}), nil},
		{"hello store dir", KindHelloOK, mustEncode(t, &HelloOK{StoreDir: "nix/store"}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.kind, tc.body)
			if err == nil {
				t.Fatalf("decoded %#v", m)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestArityV5 pins the msgpack/v5 v5.4.1 behaviour that checkShape makes
// up for: an as_array struct refuses a longer array, but an EMPTY array
// silently decodes as the zero struct. Decode refuses both.
func TestArityV5(t *testing.T) {
	for _, tc := range []struct {
		body    []byte
		v5Error bool
	}{
		{raw(0x92, string(testP1), string(testP1)), true},
		{raw(0x90), false},
	} {
		var m IsValidPath
		dec := msgpack.NewDecoder(bytes.NewReader(tc.body))
		dec.DisallowUnknownFields(true)
		err := dec.Decode(&m)
		if got := err != nil && strings.Contains(err.Error(), "number of fields in array-encoded struct has changed"); got != tc.v5Error {
			t.Errorf("% x: v5 err = %v; msgpack/v5 behaviour changed, revisit checkShape", tc.body, err)
		}
		if _, err := Decode(KindIsValidPath, tc.body); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: Decode err = %v, want ErrMalformed", tc.body, err)
		}
	}
}

// TestHugeListAllocation decodes 5 bytes claiming 10⁶ elements straight into
// the bounded list types (bypassing the well-formedness pass) and through
// Decode, and requires both to fail having allocated less than 64 KiB.
func TestHugeListAllocation(t *testing.T) {
	million := []byte{0xdd, 0x00, 0x0f, 0x42, 0x40}
	measure := func(name string, f func() error) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := f()
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n >= 64<<10 {
			t.Errorf("%s: allocated %d bytes", name, n)
		} else {
			t.Logf("%s: %v; allocated %d bytes", name, err, n)
		}
	}
	measure("Strings", func() error {
		var s Strings
		return msgpack.NewDecoder(bytes.NewReader(million)).Decode(&s)
	})
	measure("StorePaths", func() error {
		var s StorePaths
		return msgpack.NewDecoder(bytes.NewReader(million)).Decode(&s)
	})
	measure("Attrs", func() error {
		var s Attrs
		return msgpack.NewDecoder(bytes.NewReader(million)).Decode(&s)
	})
	measure("Decode Paths", func() error {
		_, err := Decode(KindPaths, raw(0x92, million, 0xc2))
		return err
	})
	// Within its maximum, a count larger than the bytes left is refused too.
	measure("Strings 1000 in 4 bytes", func() error {
		var s Strings
		return msgpack.NewDecoder(bytes.NewReader(raw(0xdc, 0x03, 0xe8, 0xa0, 0xa0))).Decode(&s)
	})
	measure("Strings from a stream", func() error {
		var s Strings
		return msgpack.NewDecoder(io.MultiReader(bytes.NewReader(raw(0x91, 0xa0)))).Decode(&s)
	})
}

func TestErrorf(t *testing.T) {
	e := Errorf(ClassPolicy, "path %q: %s", "x", strings.Repeat("y", 2*MaxText))
	if e.Validate() != nil || len(e.Message) != MaxText || !strings.HasPrefix(e.Error(), `path "x": yy`) {
		t.Errorf("Errorf gave %d bytes, %v", len(e.Message), e.Validate())
	}
	var err error = e
	var me *Error
	if !errors.As(err, &me) || me.Class != ClassPolicy {
		t.Error("errors.As(*Error) failed")
	}
}
