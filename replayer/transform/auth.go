package transform

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// commandTimeout bounds the auth command.
const commandTimeout = 30 * time.Second

// tokenSource gives the auth header value, running the command at most once
// per TTL however many requests ask at the same time.
type tokenSource struct {
	prefix, token, command string
	ttl                    time.Duration
	now                    func() time.Time

	mu      sync.Mutex
	value   string
	fetched time.Time
}

func (s *tokenSource) get() (string, error) {
	if s.command == "" {
		return s.prefix + s.token, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.value != "" && (s.ttl == 0 || s.now().Sub(s.fetched) < s.ttl) {
		return s.value, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	// The output is a secret: it goes into the header and nowhere else, and
	// errors quote neither it nor the command's stderr.
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", s.command).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("auth command: exit status %d", exit.ExitCode())
		}
		return "", fmt.Errorf("auth command: %w", err)
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("auth command: printed no token, or more than one line")
	}
	s.value, s.fetched = s.prefix+tok, s.now()
	return s.value, nil
}
