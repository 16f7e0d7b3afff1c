// Package storetest gives tests a fresh database on every dialect available: SQLite always,
// PostgreSQL when $LEADMASTER_TEST_POSTGRES names a server (.ci/run starts one).
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvPostgres names the variable holding an admin URL of a throw-away PostgreSQL server,
// such as postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const EnvPostgres = "LEADMASTER_TEST_POSTGRES"

var counter atomic.Int64

// DSNs returns a fresh SQLite path and, when available, the URL of a fresh PostgreSQL
// database, keyed by dialect name. The PostgreSQL database is dropped when the test ends.
func DSNs(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{"sqlite": filepath.Join(tb.TempDir(), "test.db")}
	if u := PostgresDSN(tb); u != "" {
		out["postgres"] = u
	}
	return out
}

// PostgresDSN returns the URL of a fresh PostgreSQL database, or "" (after logging why)
// when $LEADMASTER_TEST_POSTGRES is not set.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		tb.Logf("%s not set: PostgreSQL variant not run", EnvPostgres)
		return ""
	}
	name := fmt.Sprintf("lmtest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, counter.Add(1))
	db, err := sql.Open("pgx", admin)
	if err != nil {
		tb.Fatalf("open %s: %v", EnvPostgres, err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Name returns a subtest-friendly name for a dsn's dialect.
func Name(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "postgres"
	}
	return "sqlite"
}
