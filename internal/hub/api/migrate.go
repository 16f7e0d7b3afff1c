package api

import (
	"context"

	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Migrate creates or upgrades every table the hub uses, in dependency order (events point
// at leads; webhooks and the sender at events).
func Migrate(ctx context.Context, db *store.DB) error {
	for _, m := range []struct {
		component string
		ms        []store.Migration
	}{
		{auth.Component, auth.Migrations},
		{contacts.Component, contacts.Migrations},
		{events.Component, events.Migrations},
		{webhook.Component, webhook.Migrations},
		{sender.Component, sender.Migrations},
	} {
		if err := db.Migrate(ctx, m.component, m.ms); err != nil {
			return err
		}
	}
	return nil
}
