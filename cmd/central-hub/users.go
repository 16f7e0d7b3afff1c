package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/version"
)

func (a *app) subcommand(ctx context.Context, cfgPath string, args []string) error {
	cmd := strings.Join(args[:min(2, len(args))], " ")
	switch {
	case args[0] == "version":
		fmt.Fprintf(a.stdout, "central-hub %s\n", version.Version)
		return nil
	case cmd == "user add":
		return a.userAdd(ctx, cfgPath, args[2:])
	case cmd == "user passwd":
		return a.userPasswd(ctx, cfgPath, args[2:])
	case cmd == "user list":
		return a.userList(ctx, cfgPath, args[2:])
	case cmd == "apikey create":
		return a.apikeyCreate(ctx, cfgPath, args[2:])
	}
	return usagef("unknown command %q (try: user add, user passwd, user list, apikey create, version)", cmd)
}

// subFlags parses a subcommand's flags; --config may also come after the subcommand.
func (a *app) subFlags(name string, cfgPath *string, args []string, define func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet("central-hub "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(cfgPath, "config", *cfgPath, "configuration `FILE`")
	define(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usagef("%s: %v", name, err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", name, fs.Arg(0))
	}
	return nil
}

// withAuth opens the hub database for an operator command, runs fn, and leaves the database
// files owned by the state directory's owner (a root operator must not lock out the service).
func (a *app) withAuth(ctx context.Context, cfgPath string, fn func(*config.Config, *auth.Service) error) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	db, dsn, err := openDB(ctx, cfg, a.getenv)
	if err != nil {
		return err
	}
	err = fn(cfg, auth.New(db, auth.Options{}))
	db.Close()
	fixOwner(dsn)
	return err
}

func (a *app) readPassword() (string, error) {
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usagef("no password on stdin")
	}
	return pw, nil
}

func (a *app) userAdd(ctx context.Context, cfgPath string, args []string) error {
	var username, cliente string
	var isAdmin, stdin bool
	if err := a.subFlags("user add", &cfgPath, args, func(fs *flag.FlagSet) {
		fs.StringVar(&username, "username", "", "the new user's login `name`")
		fs.BoolVar(&isAdmin, "admin", false, "make an admin (sees every cliente)")
		fs.StringVar(&cliente, "cliente", "", "make a member of cliente `ID`")
		fs.BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	}); err != nil {
		return err
	}
	switch {
	case username == "":
		return usagef("user add: --username is required")
	case isAdmin == (cliente != ""):
		return usagef("user add: give exactly one of --admin and --cliente ID")
	case !stdin:
		return usagef("user add: --password-stdin is required (passwords never go on the command line)")
	}
	pw, err := a.readPassword()
	if err != nil {
		return err
	}
	return a.withAuth(ctx, cfgPath, func(cfg *config.Config, s *auth.Service) error {
		nu := auth.NewUser{Username: username, Password: pw, Role: hub.RoleAdmin}
		if cliente != "" {
			if _, ok := cfg.Clientes[cliente]; !ok {
				return fmt.Errorf("cliente %q is not configured in %s (add [clientes.%s] first)", cliente, cfg.Path, cliente)
			}
			nu.Role, nu.ClienteID = hub.RoleMember, cliente
		}
		u, err := s.CreateUser(ctx, nu)
		if err != nil {
			return err
		}
		what := "admin"
		if u.ClienteID != "" {
			what = "member of cliente " + u.ClienteID
		}
		fmt.Fprintf(a.stdout, "created user %s (id %d, %s)\n", u.Username, u.ID, what)
		return nil
	})
}

func (a *app) userPasswd(ctx context.Context, cfgPath string, args []string) error {
	var username string
	var stdin bool
	if err := a.subFlags("user passwd", &cfgPath, args, func(fs *flag.FlagSet) {
		fs.StringVar(&username, "username", "", "the user's login `name`")
		fs.BoolVar(&stdin, "password-stdin", false, "read the new password from the first line of stdin")
	}); err != nil {
		return err
	}
	if username == "" || !stdin {
		return usagef("user passwd: --username and --password-stdin are required")
	}
	pw, err := a.readPassword()
	if err != nil {
		return err
	}
	return a.withAuth(ctx, cfgPath, func(_ *config.Config, s *auth.Service) error {
		users, err := s.ListUsers(ctx, "")
		if err != nil {
			return err
		}
		for _, u := range users {
			if u.Username == username {
				if err := s.SetPassword(ctx, u.ID, pw); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "password of %s changed; its sessions were ended\n", username)
				return nil
			}
		}
		return fmt.Errorf("no user %q", username)
	})
}

func (a *app) userList(ctx context.Context, cfgPath string, args []string) error {
	if err := a.subFlags("user list", &cfgPath, args, func(*flag.FlagSet) {}); err != nil {
		return err
	}
	return a.withAuth(ctx, cfgPath, func(_ *config.Config, s *auth.Service) error {
		users, err := s.ListUsers(ctx, "")
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tROLE\tCLIENTE\tCREATED")
		for _, u := range users {
			cl := u.ClienteID
			if cl == "" {
				cl = "-"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Role, cl, u.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	})
}

func (a *app) apikeyCreate(ctx context.Context, cfgPath string, args []string) error {
	var cliente, name string
	if err := a.subFlags("apikey create", &cfgPath, args, func(fs *flag.FlagSet) {
		fs.StringVar(&cliente, "cliente", "", "the key's cliente `ID`")
		fs.StringVar(&name, "name", "", "a `label` for the key (such as the integration using it)")
	}); err != nil {
		return err
	}
	if cliente == "" {
		return usagef("apikey create: --cliente is required")
	}
	return a.withAuth(ctx, cfgPath, func(cfg *config.Config, s *auth.Service) error {
		if _, ok := cfg.Clientes[cliente]; !ok {
			return fmt.Errorf("cliente %q is not configured in %s", cliente, cfg.Path)
		}
		k, secret, err := s.CreateAPIKey(ctx, cliente, name, "cli")
		if err != nil {
			return err
		}
		// The key alone on stdout, so scripts can capture it; the note on stderr.
		fmt.Fprintln(a.stdout, secret)
		fmt.Fprintf(a.stderr, "API key %d for cliente %s created; it is shown only this once. Send it as Authorization: Bearer KEY\n", k.ID, cliente)
		return nil
	})
}

// fixOwner gives an SQLite database created by root to the owner of its directory (the
// leadmaster user under systemd), so the service can still open it.
func fixOwner(dsn string) {
	if os.Geteuid() != 0 || store.IsPostgres(dsn) {
		return
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Chown(p, int(st.Uid), int(st.Gid))
	}
}
