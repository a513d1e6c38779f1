package admin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"privnix/ipc"
	"privnix/ipc/msg"
)

// StatusReport is the running privnixd's state, as its admin socket told it.
type StatusReport struct {
	Version     string        `json:"version"`
	Started     time.Time     `json:"started"`
	StorePaths  uint64        `json:"store_paths"`
	NarBytes    uint64        `json:"nar_bytes"`
	Connections []StatusConn  `json:"connections"`
	Builds      []StatusBuild `json:"builds"`
}

// StatusConn is one client connection.
type StatusConn struct {
	User        string    `json:"user"`
	UID         uint32    `json:"uid"`
	PID         int32     `json:"pid"`
	Trusted     bool      `json:"trusted"`
	FrontendPID int32     `json:"frontend_pid"`
	FrontendUID uint32    `json:"frontend_uid"`
	Since       time.Time `json:"since"`
}

// StatusBuild is one build in progress.
type StatusBuild struct {
	Drv       string    `json:"drv"`
	BuildUser string    `json:"build_user"`
	BuildUID  uint32    `json:"build_uid"`
	ClientUID uint32    `json:"client_uid"`
	ClientPID int32     `json:"client_pid"`
	Since     time.Time `json:"since"`
}

// Status asks the privnixd serving p for its state. Only root (or the user
// privnixd runs as) is answered; anyone else cannot open the socket, or sees
// the connection closed.
func Status(p Paths, timeout time.Duration) (*StatusReport, error) {
	path := p.AdminSocket()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		if os.IsPermission(err) {
			return nil, fmt.Errorf("%s: permission denied: privnix status is for root", path)
		}
		return nil, fmt.Errorf("is privnixd running? %w", err)
	}
	f, err := c.File()
	c.Close()
	if err != nil {
		return nil, err
	}
	conn, err := ipc.NewConn(f)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(timeout))
	conn.SetWriteDeadline(time.Now().Add(timeout))
	if err := conn.SetStoreDir(p.StoreDir); err != nil {
		return nil, err
	}
	if err := conn.Send(msg.StatusRequest{}); err != nil {
		return nil, hungUp(err, "asking privnixd")
	}
	r := &StatusReport{Connections: []StatusConn{}, Builds: []StatusBuild{}}
	for {
		m, fds, err := conn.Recv()
		for _, f := range fds {
			f.Close()
		}
		if err != nil {
			return nil, hungUp(err, "reading privnixd's answer")
		}
		st, ok := m.(*msg.Status)
		if !ok {
			return nil, fmt.Errorf("privnixd answered %v, not Status", m.Kind())
		}
		r.add(st)
		if !st.More {
			break
		}
	}
	sort.Slice(r.Connections, func(i, j int) bool { return r.Connections[i].Since.Before(r.Connections[j].Since) })
	sort.Slice(r.Builds, func(i, j int) bool { return r.Builds[i].Since.Before(r.Builds[j].Since) })
	return r, nil
}

// hungUp explains privnixd closing the socket: it does so when the peer is
// not root.
func hungUp(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("privnixd closed the admin socket without answering: privnix status is for root")
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *StatusReport) add(st *msg.Status) {
	for _, c := range st.Connections {
		r.Connections = append(r.Connections, StatusConn{User: c.User, UID: c.UID, PID: c.PID, Trusted: c.Trusted,
			FrontendPID: c.FrontendPID, FrontendUID: c.FrontendUID, Since: time.Unix(c.Since, 0)})
	}
	for _, b := range st.Builds {
		r.Builds = append(r.Builds, StatusBuild{Drv: string(b.Drv), BuildUser: b.BuildUser, BuildUID: b.BuildUID,
			ClientUID: b.ClientUID, ClientPID: b.ClientPID, Since: time.Unix(b.Since, 0)})
	}
	if !st.More {
		r.Version, r.Started, r.StorePaths, r.NarBytes = st.Version, time.Unix(st.Started, 0), st.StorePaths, st.NarBytes
	}
}

// Print writes the report as tables for people; now is the time ages are
// measured from.
func (r *StatusReport) Print(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "privnixd %s, up %s\n", r.Version, age(now, r.Started))
	fmt.Fprintf(w, "store: %d valid paths, %s of NAR\n\n", r.StorePaths, bytesText(r.NarBytes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CONNECTIONS (%d)\n", len(r.Connections))
	if len(r.Connections) > 0 {
		fmt.Fprintln(tw, "USER\tUID\tPID\tTRUSTED\tFRONTEND PID\tFRONTEND UID\tSINCE")
	}
	for _, c := range r.Connections {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s ago\n", c.User, c.UID, c.PID, yesNo(c.Trusted), c.FrontendPID, c.FrontendUID, age(now, c.Since))
	}
	fmt.Fprintf(tw, "\nBUILDS (%d)\n", len(r.Builds))
	if len(r.Builds) > 0 {
		fmt.Fprintln(tw, "DERIVATION\tBUILD USER\tUID\tCLIENT UID\tCLIENT PID\tSINCE")
	}
	for _, b := range r.Builds {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s ago\n", b.Drv, b.BuildUser, b.BuildUID, b.ClientUID, b.ClientPID, age(now, b.Since))
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func age(now, t time.Time) string {
	d := now.Sub(t).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

func bytesText(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + units[i]
}
