// Package pgtest gives each test a PostgreSQL schema of its own: on the
// server $REPRISE_TEST_POSTGRES names or, when that is unset, on a throwaway
// cluster it starts from the Debian binaries (/usr/lib/postgresql/*/bin) for
// the life of the test binary. Without either the test skips, or fails where
// privileged tests are required (CI).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reprise-dev/reprise/internal/privileged"
)

// EnvURL names the variable holding the URL of a server to test against;
// its user must be allowed to create schemas.
const EnvURL = "REPRISE_TEST_POSTGRES"

var (
	once     sync.Once
	adminURL string
	startErr error
	server   *exec.Cmd
	dir      string
	schemas  atomic.Int64
)

// URL returns the URL of a new, empty schema that is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { startErr = start() })
	if startErr != nil {
		privileged.SkipOrFail(t, "no PostgreSQL to test with: "+startErr.Error())
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	schema := fmt.Sprintf("reprise_test_%d_%d", os.Getpid(), schemas.Add(1))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Stop stops the cluster URL started, if any; call it from TestMain.
func Stop() {
	if server == nil {
		return
	}
	// SIGINT is PostgreSQL's fast shutdown: sessions end, nothing is kept.
	server.Process.Signal(syscall.SIGINT)
	server.Wait()
	os.RemoveAll(dir)
	server = nil
}

func start() error {
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		return ping(10 * time.Second)
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		return fmt.Errorf("$%s is unset and no /usr/lib/postgresql/*/bin/postgres (Debian package postgresql)", EnvURL)
	}
	bin := filepath.Dir(bins[len(bins)-1])
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root and %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	var err error
	if dir, err = os.MkdirTemp("", "reprise-pgtest-"); err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	// A unix socket only, in the cluster's directory: no port to collide
	// with. Durability is not under test here, speed is welcome.
	server = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	server.Stdout, server.Stderr = nil, nil
	// The server dies with the test binary even if Stop is never called.
	server.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := server.Start(); err != nil {
		os.RemoveAll(dir)
		server = nil
		return fmt.Errorf("start postgres: %w", err)
	}
	adminURL = "postgres://postgres@/postgres?host=" + url.QueryEscape(dir)
	if err := ping(30 * time.Second); err != nil {
		Stop()
		return err
	}
	return nil
}

// ping waits until the server accepts connections.
func ping(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, adminURL)
		cancel()
		if err == nil {
			return conn.Close(context.Background())
		}
		if time.Now().After(deadline) {
			return errors.Join(errors.New("PostgreSQL does not accept connections"), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
