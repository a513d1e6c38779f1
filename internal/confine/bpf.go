package confine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A tiny classic-BPF assembler, just enough to compile the seccomp table in
// policy.go. Every program it emits has the same shape:
//
//	ld  [arch]            ; seccomp_data.arch
//	jeq NATIVE, 1, 0
//	ret KILL_PROCESS      ; foreign ABI (i386, arm32 compat): never legitimate
//	ld  [nr]              ; seccomp_data.nr
//	<archPrologue>        ; amd64: x32 numbers (bit 30) → KILL_PROCESS
//	jeq NR_a, 0, len(a)   ; one block per table row, skipped when nr differs
//	  <body a>            ; ends in ret (ALLOW or ERRNO) on every path
//	jeq NR_b, 0, len(b)
//	  <body b>
//	…
//	ret default           ; syscall not in the table
//
// Bodies never fall through, so the accumulator may be clobbered inside one.

// Offsets into struct seccomp_data (include/uapi/linux/seccomp.h).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // args[6] of u64; the low word of args[i] is at offArgs+8*i on little-endian
)

func stmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

func loadAbs(off uint32) unix.SockFilter {
	return stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off)
}

func ret(action uint32) unix.SockFilter {
	return stmt(unix.BPF_RET|unix.BPF_K, action)
}

func retErrno(e unix.Errno) unix.SockFilter {
	return ret(unix.SECCOMP_RET_ERRNO | (uint32(e) & unix.SECCOMP_RET_DATA))
}

// argLow returns the offset of the low 32 bits of syscall argument i. Every
// argument the table inspects is a 32-bit type in the kernel (int flags, int
// fd, pid_t, unsigned int cmd, umode_t), so the kernel itself ignores the
// high word and so may we.
func argLow(i int) uint32 {
	return offArgs + 8*uint32(i)
}

// ruleBody compiles the body of one row: for each alternative, load and mask
// each argument and compare; the first alternative whose every match holds
// returns ALLOW; if none does, the row's refusal is returned.
func ruleBody(r rule, deny unix.Errno) ([]unix.SockFilter, error) {
	if r.errno != 0 {
		return []unix.SockFilter{retErrno(r.errno)}, nil
	}
	if len(r.any) == 0 {
		return []unix.SockFilter{ret(unix.SECCOMP_RET_ALLOW)}, nil
	}
	var body []unix.SockFilter
	for _, alt := range r.any {
		if len(alt) == 0 {
			return nil, fmt.Errorf("rule %s: empty alternative", r.name)
		}
		block := 3*len(alt) + 1
		for j, m := range alt {
			if m.arg < 0 || m.arg > 5 {
				return nil, fmt.Errorf("rule %s: argument %d out of range", r.name, m.arg)
			}
			// Instructions left in this alternative after the jeq: skipping
			// them lands on the next alternative (or the final refusal).
			rest := block - (3*j + 3)
			body = append(body,
				loadAbs(argLow(m.arg)),
				stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, m.mask),
				jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, m.value&m.mask, 0, uint8(rest)),
			)
		}
		body = append(body, ret(unix.SECCOMP_RET_ALLOW))
	}
	body = append(body, retErrno(deny))
	if len(body) > 255 {
		return nil, fmt.Errorf("rule %s: body of %d instructions does not fit a BPF jump", r.name, len(body))
	}
	return body, nil
}

// assemble turns a table into a seccomp program for the native architecture.
func assemble(rules []rule, deny unix.Errno) ([]unix.SockFilter, error) {
	prog := []unix.SockFilter{
		loadAbs(offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nativeAuditArch, 1, 0),
		ret(unix.SECCOMP_RET_KILL_PROCESS),
		loadAbs(offNr),
	}
	prog = append(prog, archPrologue()...)
	seen := make(map[uint32]string)
	for _, r := range rules {
		nr := uint32(r.nr)
		if uintptr(nr) != r.nr {
			return nil, fmt.Errorf("rule %s: syscall number %d out of range", r.name, r.nr)
		}
		if prev, dup := seen[nr]; dup {
			return nil, fmt.Errorf("rule %s: syscall %d already has row %s", r.name, nr, prev)
		}
		seen[nr] = r.name
		body, err := ruleBody(r, deny)
		if err != nil {
			return nil, err
		}
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, 0, uint8(len(body))))
		prog = append(prog, body...)
	}
	prog = append(prog, retErrno(deny))
	if len(prog) > 4096 { // BPF_MAXINSNS
		return nil, fmt.Errorf("seccomp program of %d instructions is too long", len(prog))
	}
	return prog, nil
}
