package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/reprise-dev/reprise/collector/store/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// backend opens stores of one kind; every open of one backend opens the same
// database, as a restarted or a second collector would.
type backend struct {
	name string
	open func(t *testing.T) Store
}

func backends(t *testing.T) []backend {
	t.Helper()
	return []backend{
		{"sqlite", func() func(*testing.T) Store {
			path := filepath.Join(t.TempDir(), "nested", "reprise.db")
			return func(t *testing.T) Store {
				s, err := OpenSQLite(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		}()},
		postgresBackend(),
	}
}

func postgresBackend() backend {
	var url string
	return backend{"postgres", func(t *testing.T) Store {
		if url == "" {
			url = pgtest.URL(t)
		}
		s, err := OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

// forEachStore runs fn on a new empty store of each backend.
func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// forEachBackend runs fn with each backend, for tests that open more than
// one store on the same database.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}
