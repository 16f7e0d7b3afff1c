// Package auth keeps the hub's users, login sessions and per-cliente API keys. Passwords are
// hashed with argon2id; session tokens and API keys are random secrets stored only as SHA-256
// hashes, so a copy of the database lets nobody log in.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Component names this package's migrations in lm_migrations.
const Component = "hub-auth"

// Migrations create the auth tables.
var Migrations = []store.Migration{
	hub.Migration(1, `
CREATE TABLE users (
	id ID_PK,
	username TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	role TEXT NOT NULL,
	cliente_id TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE TABLE sessions (
	token_hash TEXT PRIMARY KEY,
	user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE api_keys (
	id ID_PK,
	cliente_id TEXT NOT NULL,
	name TEXT NOT NULL,
	prefix TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	last_used_at BIGINT NOT NULL DEFAULT 0,
	revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_cliente ON api_keys (cliente_id)`),
}

// Token prefixes tell a session token from an API key at a glance (and in a leaked log line).
const (
	sessionPrefix = "lms_"
	apiKeyPrefix  = "lmk_"
)

// User is a hub account.
type User struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Role      hub.Role  `json:"role"`
	ClienteID string    `json:"cliente,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Principal returns the principal a session of u acts as.
func (u User) Principal() *hub.Principal {
	return &hub.Principal{UserID: u.ID, Username: u.Username, Role: u.Role, ClienteID: u.ClienteID}
}

// Session is a successful login.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// APIKey describes a key; the secret itself is shown once, when it is created.
type APIKey struct {
	ID         int64      `json:"id"`
	ClienteID  string     `json:"cliente"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Revoked    bool       `json:"revoked,omitempty"`
}

// Options tune a Service; the zero value gives production defaults.
type Options struct {
	// TTL returns how long a new session lasts (read at every login, so a reload applies).
	TTL func() time.Duration
	// Params are the argon2id costs for new passwords.
	Params Params
	// Now is the clock (tests set it).
	Now func() time.Time
	// MaxFailsPerUser and MaxFailsPerAddr bound failed logins in FailWindow.
	MaxFailsPerUser, MaxFailsPerAddr int
	FailWindow                       time.Duration
}

// Service is the auth module.
type Service struct {
	db       *store.DB
	opt      Options
	byUser   *throttle
	byAddr   *throttle
	dummy    string // a hash checked for unknown users, so timing does not reveal them
	cacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]cached // token hash -> principal
}

type cached struct {
	p     *hub.Principal
	until time.Time
}

// New returns a Service over db, whose migrations must have run.
func New(db *store.DB, opt Options) *Service {
	if opt.TTL == nil {
		opt.TTL = func() time.Duration { return 7 * 24 * time.Hour }
	}
	if opt.Params == (Params{}) {
		opt.Params = DefaultParams
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.MaxFailsPerUser == 0 {
		opt.MaxFailsPerUser = 5
	}
	if opt.MaxFailsPerAddr == 0 {
		opt.MaxFailsPerAddr = 20
	}
	if opt.FailWindow == 0 {
		opt.FailWindow = 15 * time.Minute
	}
	dummy, _ := HashPassword("not a real password", opt.Params)
	return &Service{
		db: db, opt: opt, dummy: dummy,
		byUser:   newThrottle(opt.MaxFailsPerUser, opt.FailWindow),
		byAddr:   newThrottle(opt.MaxFailsPerAddr, opt.FailWindow),
		cacheTTL: 10 * time.Second,
		cache:    map[string]cached{},
	}
}

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 8

// NewUser is what CreateUser needs.
type NewUser struct {
	Username  string
	Password  string
	Role      hub.Role
	ClienteID string
}

// CreateUser adds a user. A member needs a cliente; an admin has none.
func (s *Service) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	if !usernameRE.MatchString(nu.Username) {
		return User{}, hub.Errorf(hub.CodeInvalid, "username %q must be 1-64 letters, digits or . _ @ + - and start with a letter or digit", nu.Username)
	}
	if utf8.RuneCountInString(nu.Password) < MinPasswordLen {
		return User{}, hub.Errorf(hub.CodeInvalid, "password must be at least %d characters", MinPasswordLen)
	}
	if len(nu.Password) > 1024 {
		return User{}, hub.Errorf(hub.CodeInvalid, "password must be at most 1024 bytes")
	}
	switch nu.Role {
	case hub.RoleAdmin:
		if nu.ClienteID != "" {
			return User{}, hub.Errorf(hub.CodeInvalid, "an admin belongs to no cliente")
		}
	case hub.RoleMember:
		if nu.ClienteID == "" {
			return User{}, hub.Errorf(hub.CodeInvalid, "a member needs a cliente")
		}
	default:
		return User{}, hub.Errorf(hub.CodeInvalid, "role must be admin or member, not %q", nu.Role)
	}
	hash, err := HashPassword(nu.Password, s.opt.Params)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	u := User{Username: nu.Username, Role: nu.Role, ClienteID: nu.ClienteID, CreatedAt: s.now()}
	err = s.db.QueryRow(ctx, `INSERT INTO users (username, password_hash, role, cliente_id, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, u.Username, hash, string(u.Role), u.ClienteID, hub.Millis(u.CreatedAt)).Scan(&u.ID)
	if store.IsUniqueViolation(err) {
		return User{}, hub.Errorf(hub.CodeConflict, "user %q already exists", nu.Username)
	}
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", err)
	}
	return u, nil
}

func (s *Service) now() time.Time { return s.opt.Now().UTC().Truncate(time.Millisecond) }

const userCols = `id, username, role, cliente_id, created_at`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var role string
	var created int64
	if err := sc.Scan(&u.ID, &u.Username, &role, &u.ClienteID, &created); err != nil {
		return User{}, err
	}
	u.Role = hub.Role(role)
	u.CreatedAt = hub.FromMillis(created)
	return u, nil
}

// ListUsers returns every user, or only cliente's when cliente is not "".
func (s *Service) ListUsers(ctx context.Context, cliente string) ([]User, error) {
	q := `SELECT ` + userCols + ` FROM users`
	var args []any
	if cliente != "" {
		q += ` WHERE cliente_id = ?`
		args = append(args, cliente)
	}
	rows, err := s.db.Query(ctx, q+` ORDER BY username`, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// GetUser returns user id.
func (s *Service) GetUser(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, hub.Errorf(hub.CodeNotFound, "user %d does not exist", id)
	}
	return u, err
}

// DeleteUser removes user id and its sessions.
func (s *Service) DeleteUser(ctx context.Context, id int64) error {
	res, err := s.db.Exec(ctx, `DELETE FROM users WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return hub.Errorf(hub.CodeNotFound, "user %d does not exist", id)
	}
	s.db.Exec(ctx, `DELETE FROM sessions WHERE user_id = ?`, id) // SQLite without FK enforcement in old files
	s.flushCache()
	return nil
}

// SetPassword replaces user id's password and ends its sessions.
func (s *Service) SetPassword(ctx context.Context, id int64, password string) error {
	if utf8.RuneCountInString(password) < MinPasswordLen {
		return hub.Errorf(hub.CodeInvalid, "password must be at least %d characters", MinPasswordLen)
	}
	hash, err := HashPassword(password, s.opt.Params)
	if err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return hub.Errorf(hub.CodeNotFound, "user %d does not exist", id)
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = ?`, id)
		s.flushCache()
		return err
	})
}

// ErrBadCredentials is the one answer for an unknown user and a wrong password alike.
var ErrBadCredentials = &hub.Error{Code: hub.CodeUnauthorized, Message: "wrong username or password"}

// Login checks username and password and opens a session. addr is the caller's address, for
// throttling. Too many failures for the user or the address answer CodeTooManyRequests.
func (s *Service) Login(ctx context.Context, username, password, addr string) (Session, error) {
	now := s.opt.Now()
	userKey := strings.ToLower(username)
	wait := max(s.byUser.blocked(userKey, now), s.byAddr.blocked(addr, now))
	if wait > 0 {
		return Session{}, &hub.Error{Code: hub.CodeTooManyRequests, RetryAfter: wait,
			Message: fmt.Sprintf("too many failed logins; try again in %s", wait.Round(time.Second))}
	}
	var hash string
	u, err := scanUserHash(s.db.QueryRow(ctx, `SELECT `+userCols+`, password_hash FROM users WHERE username = ?`, username), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		CheckPassword(s.dummy, password)
		s.byUser.fail(userKey, now)
		s.byAddr.fail(addr, now)
		return Session{}, ErrBadCredentials
	}
	if err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	ok, err := CheckPassword(hash, password)
	if err != nil {
		return Session{}, fmt.Errorf("login %s: %w", username, err)
	}
	if !ok {
		s.byUser.fail(userKey, now)
		s.byAddr.fail(addr, now)
		return Session{}, ErrBadCredentials
	}
	s.byUser.reset(userKey)
	token, hashed, err := newSecret(sessionPrefix)
	if err != nil {
		return Session{}, err
	}
	created := s.now()
	expires := created.Add(s.opt.TTL())
	if _, err := s.db.Exec(ctx, `INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		hashed, u.ID, hub.Millis(created), hub.Millis(expires)); err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	// Opportunistic cleanup keeps the table small without a separate loop.
	s.db.Exec(ctx, `DELETE FROM sessions WHERE expires_at < ?`, hub.Millis(created))
	return Session{Token: token, ExpiresAt: expires, User: u}, nil
}

func scanUserHash(row *sql.Row, hash *string) (User, error) {
	var u User
	var role string
	var created int64
	if err := row.Scan(&u.ID, &u.Username, &role, &u.ClienteID, &created, hash); err != nil {
		return User{}, err
	}
	u.Role = hub.Role(role)
	u.CreatedAt = hub.FromMillis(created)
	return u, nil
}

// Logout revokes a session token. Revoking an unknown token is not an error.
func (s *Service) Logout(ctx context.Context, token string) error {
	h := hashSecret(token)
	s.mu.Lock()
	delete(s.cache, h)
	s.mu.Unlock()
	if _, err := s.db.Exec(ctx, `DELETE FROM sessions WHERE token_hash = ?`, h); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// ErrNoCredentials answers a request that carries no valid token or key.
var ErrNoCredentials = &hub.Error{Code: hub.CodeUnauthorized, Message: "missing, expired or revoked credentials"}

// Authenticate returns the principal for a session token or API key. Valid results are cached
// for a few seconds; Logout, DeleteUser, SetPassword and RevokeAPIKey drop them at once.
func (s *Service) Authenticate(ctx context.Context, secret string) (*hub.Principal, error) {
	if !strings.HasPrefix(secret, sessionPrefix) && !strings.HasPrefix(secret, apiKeyPrefix) {
		return nil, ErrNoCredentials
	}
	h := hashSecret(secret)
	now := s.opt.Now()
	s.mu.Lock()
	c, ok := s.cache[h]
	s.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.p, nil
	}
	var p *hub.Principal
	until := now.Add(s.cacheTTL)
	if strings.HasPrefix(secret, apiKeyPrefix) {
		var id int64
		var cliente string
		err := s.db.QueryRow(ctx, `SELECT id, cliente_id FROM api_keys WHERE key_hash = ? AND revoked_at = 0`, h).Scan(&id, &cliente)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoCredentials
		}
		if err != nil {
			return nil, fmt.Errorf("authenticate: %w", err)
		}
		s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, hub.Millis(now), id)
		p = &hub.Principal{Role: hub.RoleMember, ClienteID: cliente, APIKeyID: id, Username: "apikey:" + fmt.Sprint(id)}
	} else {
		var u User
		var role string
		var created, expires int64
		err := s.db.QueryRow(ctx, `SELECT u.id, u.username, u.role, u.cliente_id, u.created_at, s.expires_at
			FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`, h).
			Scan(&u.ID, &u.Username, &role, &u.ClienteID, &created, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoCredentials
		}
		if err != nil {
			return nil, fmt.Errorf("authenticate: %w", err)
		}
		u.Role = hub.Role(role)
		exp := hub.FromMillis(expires)
		if !now.Before(exp) {
			return nil, ErrNoCredentials
		}
		if exp.Before(until) {
			until = exp
		}
		p = u.Principal()
	}
	s.mu.Lock()
	if len(s.cache) > 50_000 {
		s.cache = map[string]cached{}
	}
	s.cache[h] = cached{p: p, until: until}
	s.mu.Unlock()
	return p, nil
}

func (s *Service) flushCache() {
	s.mu.Lock()
	s.cache = map[string]cached{}
	s.mu.Unlock()
}

// CreateAPIKey makes a key for cliente and returns it with its secret, which is never shown again.
func (s *Service) CreateAPIKey(ctx context.Context, cliente, name, createdBy string) (APIKey, string, error) {
	if cliente == "" {
		return APIKey{}, "", hub.Errorf(hub.CodeInvalid, "an API key needs a cliente")
	}
	if name == "" {
		name = "api key"
	}
	if utf8.RuneCountInString(name) > 100 {
		return APIKey{}, "", hub.Errorf(hub.CodeInvalid, "name must be at most 100 characters")
	}
	secret, hashed, err := newSecret(apiKeyPrefix)
	if err != nil {
		return APIKey{}, "", err
	}
	k := APIKey{ClienteID: cliente, Name: name, Prefix: secret[:len(apiKeyPrefix)+6], CreatedBy: createdBy, CreatedAt: s.now()}
	err = s.db.QueryRow(ctx, `INSERT INTO api_keys (cliente_id, name, prefix, key_hash, created_by, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, k.ClienteID, k.Name, k.Prefix, hashed, k.CreatedBy, hub.Millis(k.CreatedAt)).Scan(&k.ID)
	if err != nil {
		return APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	return k, secret, nil
}

// ListAPIKeys returns cliente's keys, revoked ones included.
func (s *Service) ListAPIKeys(ctx context.Context, cliente string) ([]APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT id, cliente_id, name, prefix, created_by, created_at, last_used_at, revoked_at
		FROM api_keys WHERE cliente_id = ? ORDER BY id`, cliente)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	keys := []APIKey{}
	for rows.Next() {
		var k APIKey
		var created, used, revoked int64
		if err := rows.Scan(&k.ID, &k.ClienteID, &k.Name, &k.Prefix, &k.CreatedBy, &created, &used, &revoked); err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		k.CreatedAt = hub.FromMillis(created)
		if used != 0 {
			t := hub.FromMillis(used)
			k.LastUsedAt = &t
		}
		k.Revoked = revoked != 0
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// RevokeAPIKey revokes cliente's key id.
func (s *Service) RevokeAPIKey(ctx context.Context, cliente string, id int64) error {
	res, err := s.db.Exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND cliente_id = ? AND revoked_at = 0`,
		hub.Millis(s.now()), id, cliente)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return hub.Errorf(hub.CodeNotFound, "cliente %s has no active API key %d", cliente, id)
	}
	s.flushCache()
	return nil
}

// Ping reports whether the database answers.
func (s *Service) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func newSecret(prefix string) (secret, hashed string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}
