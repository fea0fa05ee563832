//go:build !amd64

package capture

import (
	"fmt"
	"runtime"

	"github.com/reprise-dev/reprise/agent/event"
)

// errArch is why nothing captures here: the programs in package bpf read
// x86-64 registers and syscall numbers and are built for amd64 only.
var errArch = fmt.Errorf("capture runs on amd64 (x86-64) only; this agent is built for %s", runtime.GOARCH)

// Capture cannot be opened on this architecture.
type Capture struct{}

var _ event.Source = (*Capture)(nil)

// Open fails: see errArch.
func Open(Config) (*Capture, error) { return nil, errArch }

// Read fails: see errArch.
func (*Capture) Read() (event.Event, error) { return event.Event{}, errArch }

// Skip fails: see errArch.
func (*Capture) Skip(event.ConnID, event.Direction, uint64, uint64) error { return errArch }

// Unread is 0.
func (*Capture) Unread() int64 { return 0 }

// Stats fails: see errArch.
func (*Capture) Stats() (Stats, error) { return Stats{}, errArch }

// Close does nothing.
func (*Capture) Close() error { return nil }
