package api

import (
	"net/http"

	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// access says who may call a route.
type access int

const (
	public  access = iota // anyone
	authed                // any valid credential
	admin                 // an admin user
	cliente               // an admin, or a member or API key of the cliente in {id}
)

type route struct {
	method  string // "" for any method
	pattern string
	access  access
	// limit is the largest request body accepted (default 64 KiB).
	limit   int64
	handler http.HandlerFunc
}

const defaultBodyLimit = 64 << 10

// routes lists every route the hub serves. The tenant-isolation test walks the cliente ones.
func (s *Server) routes() []route {
	return []route{
		{"GET", "/health", public, 0, s.handleHealthGet},
		{"GET", "/metrics", public, 0, s.handleMetricsGet},

		{"POST", "/api/auth/login", public, 0, s.handleAuthLogin},
		{"POST", "/api/auth/logout", authed, 0, s.handleAuthLogout},
		{"GET", "/api/auth/me", authed, 0, s.handleAuthMe},

		{"GET", "/api/users", admin, 0, s.handleUsersList},
		{"POST", "/api/users", admin, 0, s.handleUserCreate},
		{"DELETE", "/api/users/{uid}", admin, 0, s.handleUserDelete},
		{"PUT", "/api/users/{uid}/password", admin, 0, s.handleUserPasswordSet},

		{"GET", "/api/clientes", authed, 0, s.handleClientesList},
		{"GET", "/api/clientes/{id}", cliente, 0, s.handleClienteGet},
		{"GET", "/api/clientes/{id}/apikeys", cliente, 0, s.handleAPIKeysList},
		{"POST", "/api/clientes/{id}/apikeys", cliente, 0, s.handleAPIKeyCreate},
		{"DELETE", "/api/clientes/{id}/apikeys/{kid}", cliente, 0, s.handleAPIKeyDelete},

		{"GET", "/api/clientes/{id}/contacts", cliente, 0, s.handleContactsList},
		{"POST", "/api/clientes/{id}/contacts", cliente, 0, s.handleContactCreate},
		{"GET", "/api/clientes/{id}/contacts/{lid}", cliente, 0, s.handleContactGet},
		{"PATCH", "/api/clientes/{id}/contacts/{lid}", cliente, 0, s.handleContactUpdate},
		{"DELETE", "/api/clientes/{id}/contacts/{lid}", cliente, 0, s.handleContactDelete},
		{"GET", "/api/clientes/{id}/contacts/{lid}/messages", cliente, 0, s.handleContactMessagesList},
		{"POST", "/api/clientes/{id}/contacts/sync", cliente, 0, s.handleContactsSync},
		{"POST", "/api/clientes/{id}/contacts/import", cliente, importBodyLimit, s.handleContactsImport},

		{"GET", "/api/clientes/{id}/conversations", cliente, 0, s.handleConversationsList},
		{"GET", "/api/clientes/{id}/events", cliente, 0, s.handleEventsList},

		{"GET", "/api/clientes/{id}/webhook", cliente, 0, s.handleWebhookGet},
		{"PUT", "/api/clientes/{id}/webhook", cliente, 0, s.handleWebhookSet},
		{"DELETE", "/api/clientes/{id}/webhook", cliente, 0, s.handleWebhookDelete},
		{"GET", "/api/clientes/{id}/webhook/deliveries", cliente, 0, s.handleWebhookDeliveriesList},
		{"POST", "/api/clientes/{id}/webhook/deliveries/{eid}/retry", cliente, 0, s.handleWebhookDeliveryRetry},

		// Sending (package sender): the outbox, campaigns and the cliente's pace.
		{"GET", "/api/clientes/{id}/messages", cliente, 0, s.Sender.HandleMessagesList},
		{"POST", "/api/clientes/{id}/messages", cliente, 0, s.Sender.HandleMessageCreate},
		{"GET", "/api/clientes/{id}/messages/{mid}", cliente, 0, s.Sender.HandleMessageGet},
		{"GET", "/api/clientes/{id}/campaigns", cliente, 0, s.Sender.HandleCampaignsList},
		{"POST", "/api/clientes/{id}/campaigns", cliente, sender.CampaignBodyLimit, s.Sender.HandleCampaignCreate},
		{"GET", "/api/clientes/{id}/campaigns/{cid}", cliente, 0, s.Sender.HandleCampaignGet},
		{"GET", "/api/clientes/{id}/campaigns/{cid}/preview", cliente, 0, s.Sender.HandleCampaignPreview},
		{"POST", "/api/clientes/{id}/campaigns/{cid}/start", cliente, 0, s.Sender.HandleCampaignStart},
		{"POST", "/api/clientes/{id}/campaigns/{cid}/pause", cliente, 0, s.Sender.HandleCampaignPause},
		{"POST", "/api/clientes/{id}/campaigns/{cid}/resume", cliente, 0, s.Sender.HandleCampaignResume},
		{"POST", "/api/clientes/{id}/campaigns/{cid}/cancel", cliente, 0, s.Sender.HandleCampaignCancel},
		{"GET", "/api/clientes/{id}/sending", cliente, 0, s.Sender.HandleSendingGet},
		{"POST", "/api/clientes/{id}/sending/pause", cliente, 0, s.Sender.HandleSendingPause},
		{"POST", "/api/clientes/{id}/sending/resume", cliente, 0, s.Sender.HandleSendingResume},

		{"GET", "/api/whatsapp/{id}/qr", cliente, 0, s.handleWhatsAppQRGet},
		{"GET", "/api/whatsapp/{id}/status", cliente, 0, s.handleWhatsAppStatusGet},
		{"POST", "/api/whatsapp/{id}/pair-code", cliente, 0, s.handleWhatsAppPairCodeCreate},
		{"POST", "/api/whatsapp/{id}/logout", cliente, 0, s.handleWhatsAppLogout},

		{"GET", "/session-manager/status", authed, 0, s.handleSessionManagersStatus},
		{"", "/session-manager/{id}/{path...}", cliente, 0, s.handleSessionManagerProxy},
	}
}

func (s *Server) buildMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := http.Handler(rt.handler)
		switch rt.access {
		case cliente:
			h = s.requireCliente(h)
		case admin:
			h = s.requireAdmin(h)
		}
		if rt.access != public {
			h = s.authenticate(h)
		}
		h = limitBody(rt.limit, h)
		pattern := rt.pattern
		if rt.method != "" {
			pattern = rt.method + " " + rt.pattern
		}
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/api/", s.handleNotFound)
	mux.HandleFunc("/session-manager/", s.handleNotFound)
	if s.UI != nil {
		mux.Handle("/", s.UI)
	} else {
		mux.HandleFunc("/", s.handleRoot)
	}
	return mux
}

// allowed returns the methods some route accepts for r's path (for a 405 rather than a 404).
func (s *Server) allowed(r *http.Request) []string {
	var ms []string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" && pattern != "/api/" && pattern != "/session-manager/" {
			ms = append(ms, m)
		}
	}
	return ms
}
