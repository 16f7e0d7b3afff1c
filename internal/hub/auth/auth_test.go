package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse", DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash = %q, want argon2id PHC format with the default costs", h)
	}
	for _, tt := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct horsE", false}, {"", false}} {
		if ok, err := CheckPassword(h, tt.pw); ok != tt.want || err != nil {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", tt.pw, ok, err, tt.want)
		}
	}
	if _, err := CheckPassword("$2a$10$bcrypt", "x"); err == nil {
		t.Error("CheckPassword accepted a foreign hash format")
	}
}

func newService(t *testing.T, dsn string, now *time.Time) *Service {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), Component, Migrations); err != nil {
		t.Fatal(err)
	}
	return New(db, Options{Params: Params{Memory: 64, Time: 1, Threads: 1}, TTL: func() time.Duration { return time.Hour },
		Now: func() time.Time { return *now }})
}

func TestSessions(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			s := newService(t, dsn, &now)
			u, err := s.CreateUser(ctx, NewUser{Username: "ana", Password: "long password", Role: hub.RoleMember, ClienteID: "51"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateUser(ctx, NewUser{Username: "ana", Password: "long password", Role: hub.RoleAdmin}); hub.ErrorCode(err) != hub.CodeConflict {
				t.Errorf("duplicate user: %v, want conflict", err)
			}
			if _, err := s.CreateUser(ctx, NewUser{Username: "x", Password: "long password", Role: hub.RoleMember}); hub.ErrorCode(err) != hub.CodeInvalid {
				t.Errorf("member without cliente: %v, want invalid", err)
			}
			sess, err := s.Login(ctx, "ana", "long password", "1.2.3.4")
			if err != nil {
				t.Fatal(err)
			}
			if !sess.ExpiresAt.Equal(now.UTC().Truncate(time.Millisecond).Add(time.Hour)) {
				t.Errorf("expires_at = %v, want login time + TTL", sess.ExpiresAt)
			}
			// Only a hash is stored.
			var n int
			s.db.QueryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE token_hash = ?`, sess.Token).Scan(&n)
			if n != 0 {
				t.Error("the session token is stored in the clear")
			}
			p, err := s.Authenticate(ctx, sess.Token)
			if err != nil || p.UserID != u.ID || p.ClienteID != "51" || p.Role != hub.RoleMember {
				t.Errorf("Authenticate = %+v, %v", p, err)
			}
			now = now.Add(61 * time.Minute)
			if _, err := s.Authenticate(ctx, sess.Token); err == nil {
				t.Error("an expired session still authenticates")
			}
			sess, _ = s.Login(ctx, "ana", "long password", "1.2.3.4")
			if err := s.SetPassword(ctx, u.ID, "another long one"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, sess.Token); err == nil {
				t.Error("a session survives a password change")
			}
			k, secret, err := s.CreateAPIKey(ctx, "51", "crm", "ana")
			if err != nil {
				t.Fatal(err)
			}
			if p, err := s.Authenticate(ctx, secret); err != nil || p.ClienteID != "51" || p.APIKeyID != k.ID {
				t.Errorf("API key = %+v, %v", p, err)
			}
			if err := s.RevokeAPIKey(ctx, "52", k.ID); hub.ErrorCode(err) != hub.CodeNotFound {
				t.Errorf("revoke through another cliente: %v, want not_found", err)
			}
			s.RevokeAPIKey(ctx, "51", k.ID)
			if _, err := s.Authenticate(ctx, secret); err == nil {
				t.Error("a revoked key still authenticates")
			}
			if err := s.DeleteUser(ctx, u.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Login(ctx, "ana", "another long one", "5.6.7.8"); err == nil {
				t.Error("a deleted user logs in")
			}
		})
	}
}
