// Package store opens the databases LeadMaster uses (SQLite by default, PostgreSQL when a
// postgres:// URL is configured) and applies embedded, versioned migrations. The same SQL runs
// on both: queries are written with ? placeholders and rebound for PostgreSQL.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "github.com/mattn/go-sqlite3"    // registers "sqlite3"
)

// Dialect is the SQL flavour of a DB.
type Dialect int

const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite3"
}

// Domain errors shared by every store.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// DB is a database handle that knows its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens dsn: a postgres:// URL, or an SQLite file given as a path or sqlite:PATH. SQLite
// gets WAL, foreign keys, a busy timeout and immediate write transactions. For PostgreSQL a
// non-empty schema is created if needed and put first on the search path, which lets several
// session managers share one database.
func Open(ctx context.Context, dsn, schema string) (*DB, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn, schema)
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("_foreign_keys", "on")
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	q.Set("_synchronous", "NORMAL")
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &DB{DB: db, Dialect: SQLite}, nil
}

func openPostgres(ctx context.Context, dsn, schema string) (*DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: invalid URL")
	}
	if schema != "" {
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		_, err = admin.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(schema))
		admin.Close()
		if err != nil {
			return nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
	}
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres %s: %w", u.Redacted(), err)
	}
	db.SetMaxOpenConns(10)
	return &DB{DB: db, Dialect: Postgres}, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Rebind turns ? placeholders into $1, $2 ... for PostgreSQL. Queries must not contain a
// literal question mark.
func (db *DB) Rebind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// Exec runs a rebound statement.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.DB.ExecContext(ctx, db.Rebind(query), args...)
}

// Query runs a rebound query.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.DB.QueryContext(ctx, db.Rebind(query), args...)
}

// QueryRow runs a rebound single-row query.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.Rebind(query), args...)
}

// Tx is a transaction that rebinds like DB.
type Tx struct {
	*sql.Tx
	db *DB
}

// Begin starts a transaction.
func (db *DB) Begin(ctx context.Context) (*Tx, error) {
	tx, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &Tx{Tx: tx, db: db}, nil
}

// InTx runs fn in a transaction, committing when it returns nil.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Exec runs a rebound statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, tx.db.Rebind(query), args...)
}

// Query runs a rebound query in the transaction.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, tx.db.Rebind(query), args...)
}

// QueryRow runs a rebound single-row query in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, tx.db.Rebind(query), args...)
}

// Migration is one schema step. SQL runs on both dialects unless Postgres is set, in which
// case SQL is for SQLite only. Statements are separated by ";\n".
type Migration struct {
	Version  int
	SQL      string
	Postgres string
}

// Portable builds a Migration from SQL written once for both dialects: ID_PK becomes an
// auto-increment integer primary key (INTEGER PRIMARY KEY AUTOINCREMENT on SQLite, BIGSERIAL
// PRIMARY KEY on PostgreSQL); the rest must be SQL both accept (times as BIGINT Unix
// milliseconds, booleans as INTEGER 0/1).
func Portable(version int, sql string) Migration {
	return Migration{
		Version:  version,
		SQL:      strings.ReplaceAll(sql, "ID_PK", "INTEGER PRIMARY KEY AUTOINCREMENT"),
		Postgres: strings.ReplaceAll(sql, "ID_PK", "BIGSERIAL PRIMARY KEY"),
	}
}

// Migrate applies the migrations of component that are not yet applied, each in its own
// transaction, in version order. Versions must start at 1 and have no gaps.
func (db *DB) Migrate(ctx context.Context, component string, migrations []Migration) error {
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS lm_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	var current int
	if err := db.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM lm_migrations WHERE component = ?`, component).Scan(&current); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for i, m := range migrations {
		if m.Version != i+1 {
			return fmt.Errorf("migrate %s: migration %d has version %d", component, i+1, m.Version)
		}
		if m.Version <= current {
			continue
		}
		text := m.SQL
		if db.Dialect == Postgres && m.Postgres != "" {
			text = m.Postgres
		}
		err := db.InTx(ctx, func(tx *Tx) error {
			for _, stmt := range strings.Split(text, ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.Tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, strings.TrimSpace(stmt))
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO lm_migrations (component, version) VALUES (?, ?)`, component, m.Version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s to version %d: %w", component, m.Version, err)
		}
	}
	if len(migrations) < current {
		return fmt.Errorf("migrate %s: database is at version %d, this build knows only %d (downgrade?)", component, current, len(migrations))
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique or primary key constraint failure.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505")
}
