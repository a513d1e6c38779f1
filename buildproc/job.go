// Package buildproc is the build process: everything from "the monitor has
// decided to build derivation D as build user U" to "the builder exited".
// cmd/privnix-build is its main.
//
// The monitor execs privnix-build as root (it must mount), in new mount, PID,
// IPC and UTS namespaces and, unless the build is fixed-output, a new network
// namespace; it answers its Hello with a BuildJob (ipc/msg/build.go has the
// sequence). Setup then builds the sandbox, drops to the build user, confines
// itself, says SandboxReady and execs the builder, which becomes PID 1 of the
// build's PID namespace: when it exits, the kernel kills every process left
// in the namespace, and the monitor's wait on the pidfd gives the exit status.
package buildproc

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"privnix/ipc"
	"privnix/ipc/msg"
)

// Cloneflags are the namespaces the monitor must start privnix-build in:
// mount, PID, IPC and UTS, and network unless the build is fixed-output
// (network). Never CLONE_NEWUSER: the build process is root in the initial
// user namespace, and its builder a real build uid. Setup checks them.
func Cloneflags(network bool) uintptr {
	f := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if !network {
		f |= syscall.CLONE_NEWNET
	}
	return f
}

// Job is one build: the BuildJob (with every BuildJobMore appended) and its
// three fds.
type Job struct {
	msg.BuildJob
	StoreView *os.File // <buildroot>/store: root-owned 0755, empty; becomes the build's store directory
	BuildDir  *os.File // <buildroot>/build: owned by the build user, 0700, empty
	Log       *os.File // the log pipe's write end: the builder's stdout and stderr
}

// Close closes the job's fds.
func (j *Job) Close() {
	for _, f := range []*os.File{j.StoreView, j.BuildDir, j.Log} {
		if f != nil {
			f.Close()
		}
	}
}

// Totals over a job and its continuations.
const maxJobParts = 1 << 12

// AwaitJob says Hello on the monitor channel and receives the job: a
// BuildJob with exactly three fds, then BuildJobMore messages while More is
// set. It checks the totals and the fds' types; Setup checks their owners
// and modes. Any error means the monitor got the protocol wrong.
func AwaitJob(mon *ipc.Conn) (*Job, error) {
	if err := mon.Send(&msg.Hello{}); err != nil {
		return nil, err
	}
	m, fds, err := mon.Recv()
	if err != nil {
		return nil, err
	}
	bj, ok := m.(*msg.BuildJob)
	if !ok || len(fds) != 3 {
		for _, f := range fds {
			f.Close()
		}
		return nil, fmt.Errorf("monitor answered Hello with %v and %d fds", m.Kind(), len(fds))
	}
	j := &Job{BuildJob: *bj, StoreView: fds[0], BuildDir: fds[1], Log: fds[2]}
	if err := mon.SetStoreDir(bj.StoreDir); err != nil {
		j.Close()
		return nil, err
	}
	for parts := 0; j.More; parts++ {
		if parts >= maxJobParts {
			j.Close()
			return nil, fmt.Errorf("more than %d job parts", maxJobParts)
		}
		m, fds, err := mon.Recv()
		if err != nil {
			j.Close()
			return nil, err
		}
		more, ok := m.(*msg.BuildJobMore)
		if !ok {
			for _, f := range fds {
				f.Close()
			}
			j.Close()
			return nil, fmt.Errorf("monitor sent %v while the job was incomplete", m.Kind())
		}
		j.Env = append(j.Env, more.Env...)
		j.InputPaths = append(j.InputPaths, more.InputPaths...)
		j.SandboxPaths = append(j.SandboxPaths, more.SandboxPaths...)
		j.Files = append(j.Files, more.Files...)
		j.More = more.More
	}
	if err := j.check(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

func (j *Job) check() error {
	envBytes := 0
	for _, kv := range j.Env {
		envBytes += len(kv.Key) + len(kv.Value) + 2
	}
	fileBytes := 0
	for _, f := range j.Files {
		fileBytes += len(f.Data)
	}
	switch {
	case len(j.Env) > msg.MaxEnvVars || envBytes > msg.MaxEnvBytes:
		return fmt.Errorf("environment of %d variables, %d bytes", len(j.Env), envBytes)
	case len(j.InputPaths) > msg.MaxBuildInputs:
		return fmt.Errorf("%d input paths, at most %d", len(j.InputPaths), msg.MaxBuildInputs)
	case len(j.SandboxPaths) > msg.MaxSandboxPaths:
		return fmt.Errorf("%d sandbox paths, at most %d", len(j.SandboxPaths), msg.MaxSandboxPaths)
	case fileBytes > msg.MaxBuildFileLen:
		return fmt.Errorf("%d bytes of build files, at most %d", fileBytes, msg.MaxBuildFileLen)
	}
	// Each output is a name the builder creates; none may already be an
	// input (its mount point would be there).
	inputs := make(map[msg.StorePath]bool, len(j.InputPaths))
	for _, p := range j.InputPaths {
		inputs[p] = true
	}
	for _, o := range j.Outputs {
		if inputs[o.Path] {
			return fmt.Errorf("output %s is also an input", o.Name)
		}
	}
	for i, f := range []*os.File{j.StoreView, j.BuildDir} {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("job fd %d is not a directory", i)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(j.Log.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("log fd: type %#o, want a pipe", st.Mode&unix.S_IFMT)
	}
	return nil
}
