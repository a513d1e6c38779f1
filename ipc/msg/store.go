//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import "fmt"

// The upload path: AddToStore, AddTextToStore and AddToStoreNar on the
// frontend channel, and the storeproc channel of the throw-away worker that
// writes the bytes beneath a staging directory. Bulk bytes never pass through
// the monitor: they travel on a pipe from the frontend to the storeproc.
//
//	frontend                               monitor                               storeproc (fresh, own uid)
//	 ── BeginUpload{...} ───────────────────▶  policy; staging dir; spawn ────────▶ (exec)
//	                                          ◀────────────────────────────────── Hello
//	                                          ── StoreJob{Format, MaxBytes} + [staging dirfd, data read fd] ─▶
//	 ◀── UploadChannel{ID} + [data write fd]
//	 (writes the bytes, closes the fd)
//	 ── FinishUpload{ID, Written} ──────────▶                                      restores/writes "out" beneath the dirfd
//	                                          ◀────────────────────────────────── Staged{NarSize, Bytes} | Error
//	                                          (kills the storeproc, seals, registers)
//	 ◀── PathInfo | Error
//
// BeginUpload may also be answered with Error (refused by policy, before
// anything is spawned). The storeproc runs one job and exits, or with
// StoreJob.More waits for the next one; an Error from it (ClassPolicy, "the
// NAR is malformed: …") is meant for the user.
const (
	// frontend channel (0x0210–0x022f)
	KindBeginUpload   Kind = 0x0210 // answered with UploadChannel or Error
	KindUploadChannel Kind = 0x0211
	KindFinishUpload  Kind = 0x0212 // answered with PathInfo or Error

	// storeproc channel (0x0300–0x03ff)
	KindStoreJob Kind = 0x0301 // the monitor's answer to the storeproc's Hello
	KindStaged   Kind = 0x0303 // the storeproc's answer to StoreJob (or Error)
)

// MaxUpload is the largest upload, in bytes (1 TiB).
const MaxUpload uint64 = 1 << 40

// Upload modes (BeginUpload.Mode).
const (
	UploadCA  uint64 = 1 // AddToStore / AddTextToStore: content-addressed, the monitor computes the path
	UploadNar uint64 = 2 // AddToStoreNar: an import with a claimed PathInfo
)

// Data formats (BeginUpload.Format, StoreJob.Format): what the bytes on the
// data fd are.
const (
	FormatNAR  uint64 = 1 // a NAR
	FormatFlat uint64 = 2 // the raw contents of one regular file
)

// Hard caps on the NAR limits a StoreJob may set (narreader's own caps for
// names and targets).
const (
	MaxNarDepth     = 1 << 12
	MaxNarEntries   = 1 << 32
	MaxNarNameLen   = 255
	MaxNarTargetLen = 4095
)

// BeginUpload starts an upload. The answer is UploadChannel, whose fd the
// frontend writes the bytes to, or Error.
//
// Mode UploadCA: Name, CAMethod ("flat", "nar" or "text"), Algo ("md5",
// "sha1", "sha256", "sha512"; "text" needs "sha256"), References; Info is
// empty and DontCheckSigs false. "nar" comes as FormatNAR, "text" as
// FormatFlat, "flat" as either (FormatNAR: a NAR holding exactly one regular
// file, whose contents are added — what clients before protocol 1.25 send).
//
// Mode UploadNar: Info is the claimed PathInfo (its RegistrationTime is
// ignored); Name, CAMethod, Algo and References are empty; the format is
// FormatNAR; Size, if known, equals Info.NarSize when that is not 0.
type BeginUpload struct {
	_msgpack      struct{} `msgpack:",as_array"`
	Mode          uint64
	Name          string     // UploadCA
	CAMethod      string     // UploadCA
	Algo          string     // UploadCA
	References    StorePaths // UploadCA
	Info          PathInfo   // UploadNar
	DontCheckSigs bool       // UploadNar; policy decides whether it counts
	Format        uint64
	Size          uint64 // exact byte count when the client announced it; 0 = unknown
	Repair        bool
}

func (BeginUpload) Kind() Kind { return KindBeginUpload }
func (m BeginUpload) Validate() error {
	if m.Format != FormatNAR && m.Format != FormatFlat {
		return fmt.Errorf("format %d out of range", m.Format)
	}
	if m.Size > MaxUpload {
		return fmt.Errorf("size %d larger than %d", m.Size, MaxUpload)
	}
	switch m.Mode {
	case UploadCA:
		if err := field("Name", ValidName(m.Name)); err != nil {
			return err
		}
		if _, ok := hashLens[m.Algo]; !ok {
			return fmt.Errorf("algo: unknown hash algorithm %q", m.Algo)
		}
		switch m.CAMethod {
		case "text":
			if m.Algo != "sha256" || m.Format != FormatFlat {
				return fmt.Errorf("text upload with %s, format %d (want sha256, flat)", m.Algo, m.Format)
			}
		case "nar":
			if m.Format != FormatNAR {
				return fmt.Errorf("nar upload with format %d", m.Format)
			}
		case "flat":
		default:
			return fmt.Errorf("CAMethod: unknown method %q", m.CAMethod)
		}
		if !emptyInfo(m.Info) || m.DontCheckSigs {
			return fmt.Errorf("content-addressed upload with import fields")
		}
		return field("References", m.References.Validate())
	case UploadNar:
		if m.Name != "" || m.CAMethod != "" || m.Algo != "" || len(m.References) != 0 {
			return fmt.Errorf("import with content-addressed upload fields")
		}
		if m.Format != FormatNAR {
			return fmt.Errorf("import with format %d", m.Format)
		}
		if m.Info.NarSize > MaxUpload {
			return fmt.Errorf("claimed NAR size %d larger than %d", m.Info.NarSize, MaxUpload)
		}
		if m.Size != 0 && m.Info.NarSize != 0 && m.Size != m.Info.NarSize {
			return fmt.Errorf("size %d differs from the claimed NAR size %d", m.Size, m.Info.NarSize)
		}
		return field("Info", m.Info.Validate())
	}
	return fmt.Errorf("mode %d out of range", m.Mode)
}

// emptyInfo reports whether p has no field set (decoding may give empty,
// non-nil lists).
func emptyInfo(p PathInfo) bool {
	return p.Path == "" && p.Deriver == "" && p.NarHash == "" && len(p.References) == 0 &&
		p.RegistrationTime == 0 && p.NarSize == 0 && !p.Ultimate && len(p.Sigs) == 0 && p.CA == ""
}

// UploadChannel answers BeginUpload with the write end of the data pipe as
// its one fd. ID names the upload in FinishUpload.
type UploadChannel struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
}

func (UploadChannel) Kind() Kind { return KindUploadChannel }
func (m UploadChannel) Validate() error {
	if m.ID == 0 {
		return fmt.Errorf("upload id 0")
	}
	return nil
}

// FinishUpload tells the monitor that the frontend wrote Written bytes and
// closed the data fd. Answered with PathInfo (the path as registered) or
// Error.
type FinishUpload struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Written  uint64
}

func (FinishUpload) Kind() Kind { return KindFinishUpload }
func (m FinishUpload) Validate() error {
	if m.ID == 0 {
		return fmt.Errorf("upload id 0")
	}
	if m.Written > MaxUpload {
		return fmt.Errorf("%d bytes written, at most %d", m.Written, MaxUpload)
	}
	return nil
}

// StoreJob answers a storeproc's Hello with its one job and two fds: [0] the
// staging directory (O_DIRECTORY, owned by the storeproc's uid, mode 0700),
// [1] the read end of the data pipe. The storeproc writes "out" beneath the
// directory: the restored NAR (FormatNAR) or a regular file with the bytes
// (FormatFlat), reading at most MaxBytes bytes. The Nar* limits bound the NAR
// (FormatNAR: each at least 1; FormatFlat: ignored, 0 allowed).
type StoreJob struct {
	_msgpack     struct{} `msgpack:",as_array"`
	Format       uint64
	MaxBytes     uint64
	MaxDepth     uint64 // directories nested inside each other, the root counting 1
	MaxEntries   uint64 // directory entries in the whole NAR
	MaxNameLen   uint64 // bytes of one entry name
	MaxTargetLen uint64 // bytes of one symlink target
	// SharedUID: the monitor is not root, so the storeproc runs as the
	// monitor's own uid (see HelloOK.SharedUID) and confines itself with
	// inherited credentials.
	SharedUID bool
	// More: after answering, the storeproc waits for another StoreJob (no
	// second Hello) of the same client connection, with a new staging
	// directory beside the first; without it, it exits. The monitor kills it
	// whenever it wants no more. Never with SharedUID: the storeproc then
	// confines its writes to the parent of its staging directory (the
	// staging root), where only the permissions of its own uid keep it out
	// of other staging directories.
	More bool
}

func (StoreJob) Kind() Kind { return KindStoreJob }
func (m StoreJob) Validate() error {
	if m.More && m.SharedUID {
		return fmt.Errorf("a job with more to follow cannot share the monitor's uid")
	}
	if m.Format != FormatNAR && m.Format != FormatFlat {
		return fmt.Errorf("format %d out of range", m.Format)
	}
	if m.MaxBytes > MaxUpload {
		return fmt.Errorf("max bytes %d larger than %d", m.MaxBytes, MaxUpload)
	}
	for _, l := range []struct {
		name string
		v    uint64
		max  uint64
	}{
		{"MaxDepth", m.MaxDepth, MaxNarDepth},
		{"MaxEntries", m.MaxEntries, MaxNarEntries},
		{"MaxNameLen", m.MaxNameLen, MaxNarNameLen},
		{"MaxTargetLen", m.MaxTargetLen, MaxNarTargetLen},
	} {
		if l.v > l.max || m.Format == FormatNAR && l.v == 0 {
			return fmt.Errorf("%s %d not in 1..%d", l.name, l.v, l.max)
		}
	}
	return nil
}

// Staged answers StoreJob: "out" is written. NarSize is the NAR's size
// (FormatNAR) or the file's (FormatFlat); Bytes is how many bytes the
// storeproc read from the pipe. The storeproc refuses trailing bytes after a
// NAR, so the two are equal; the monitor seals and measures for itself
// anyway.
type Staged struct {
	_msgpack struct{} `msgpack:",as_array"`
	NarSize  uint64
	Bytes    uint64
}

func (Staged) Kind() Kind { return KindStaged }
func (m Staged) Validate() error {
	if m.Bytes > MaxUpload || m.NarSize > m.Bytes {
		return fmt.Errorf("NAR size %d, %d bytes read (at most %d)", m.NarSize, m.Bytes, MaxUpload)
	}
	return nil
}

var storeTable = []Spec{
	row[BeginUpload](0),
	row[UploadChannel](1),
	row[FinishUpload](0),
	row[StoreJob](2),
	row[Staged](0),
}
