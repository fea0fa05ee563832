package capture

import (
	"log/slog"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/sockdiag"
)

// maxRoles bounds the role cache; connections whose close was missed
// (process exit) would otherwise stay in it.
const maxRoles = 65536

// roles gives connections the kernel first saw mid-stream (opened before
// the capture) their role, once per connection, from sock_diag.
type roles struct {
	diag  *sockdiag.Resolver
	cache map[event.ConnID]event.Role
	log   *slog.Logger
}

func newRoles() *roles {
	return &roles{
		diag:  sockdiag.New(),
		cache: map[event.ConnID]event.Role{},
		log:   slog.With("component", "capture"),
	}
}

func (r *roles) role(ev event.Event) event.Role {
	role, ok := r.cache[ev.Conn]
	if !ok {
		var err error
		role, err = r.diag.Role(ev.Conn.TGID, ev.Local, ev.Remote)
		if err != nil {
			// Typically the process is gone; the role stays unknown.
			r.log.Debug("resolve role", "conn", ev.Conn.String(), "err", err)
		}
		if len(r.cache) >= maxRoles {
			clear(r.cache)
		}
		r.cache[ev.Conn] = role
	}
	if ev.Kind == event.KindClose {
		delete(r.cache, ev.Conn)
	}
	return role
}

func (r *roles) close() { r.diag.Close() }
