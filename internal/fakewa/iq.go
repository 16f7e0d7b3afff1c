package fakewa

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// device is the server's record of a linked device: the keys it registered and uploaded,
// and the messages and receipts waiting for it.
type device struct {
	jid, lid types.JID
	pairedAt time.Time
	noisePub [32]byte

	identity  [32]byte
	regID     uint32
	signedID  uint32
	signedPub [32]byte
	signedSig [64]byte
	preKeys   []uploadedPreKey // uploaded and not handed out yet
	outMu     sync.Mutex       // orders deliveries to this device
	out       []outItem        // undelivered, or delivered but not yet receipted
	conn      *conn            // the logged-in connection, if any
	ready     bool             // conn finished its login sequence (passive iq)
}

type uploadedPreKey struct {
	id  uint32
	pub [32]byte
}

func (c *conn) reply(req *waBinary.Node, content ...waBinary.Node) {
	node := waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{
		"id":   req.Attrs["id"],
		"type": "result",
		"from": types.ServerJID,
	}}
	if len(content) > 0 {
		node.Content = content
	}
	c.send(node)
}

func (c *conn) replyError(req *waBinary.Node, code int, text string) {
	c.send(waBinary.Node{
		Tag: "iq",
		Attrs: waBinary.Attrs{
			"id":   req.Attrs["id"],
			"type": "error",
			"from": types.ServerJID,
		},
		Content: []waBinary.Node{{Tag: "error", Attrs: waBinary.Attrs{"code": code, "text": text}}},
	})
}

func (c *conn) handleIQ(node *waBinary.Node) {
	ag := node.AttrGetter()
	id := ag.OptionalString("id")
	switch ag.OptionalString("type") {
	case "result", "error":
		if fn := c.takeWaiter(id); fn != nil {
			fn(node)
		}
		return
	}
	xmlns := ag.OptionalString("xmlns")
	var child waBinary.Node
	if children := node.GetChildren(); len(children) > 0 {
		child = children[0]
	}
	switch {
	case xmlns == "w:p":
		c.reply(node)
	case xmlns == "passive":
		c.reply(node)
		if child.Tag == "active" {
			c.becomeReady()
		}
	case xmlns == "encrypt":
		c.handleEncrypt(node, child)
	case xmlns == "usync":
		c.handleUsync(node, child)
	case xmlns == "md" && child.Tag == "remove-companion-device":
		c.handleRemoveCompanion(node, child)
	case xmlns == "md" && child.Tag == "link_code_companion_reg":
		c.handleLinkCode(node, child)
	default:
		c.log.Debug("unhandled iq", "xmlns", xmlns, "child", child.Tag)
		c.replyError(node, 501, "feature-not-implemented")
	}
}

func (c *conn) handleEncrypt(node *waBinary.Node, child waBinary.Node) {
	d := c.loggedIn()
	if d == nil {
		c.replyError(node, 401, "not-authorized")
		return
	}
	s := c.srv
	switch {
	case child.Tag == "count":
		s.mu.Lock()
		n := len(d.preKeys)
		s.mu.Unlock()
		c.reply(node, waBinary.Node{Tag: "count", Attrs: waBinary.Attrs{"value": n}})
	case child.Tag == "key":
		var users []waBinary.Node
		for _, u := range child.GetChildrenByTag("user") {
			jid, ok := u.Attrs["jid"].(types.JID)
			if !ok {
				continue
			}
			users = append(users, s.bundleNode(c.ctx, jid))
		}
		c.reply(node, waBinary.Node{Tag: "list", Content: users})
	case node.Attrs["type"] == "set":
		c.storeKeys(d, node)
		c.reply(node)
	default:
		c.replyError(node, 501, "feature-not-implemented")
	}
}

// storeKeys keeps what the client uploads (the prekey upload after login), so that contacts
// can start sessions with it.
func (c *conn) storeKeys(d *device, node *waBinary.Node) {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, child := range node.GetChildren() {
		switch child.Tag {
		case "registration":
			if b, ok := child.Content.([]byte); ok && len(b) == 4 {
				d.regID = binary.BigEndian.Uint32(b)
			}
		case "identity":
			if b, ok := child.Content.([]byte); ok && len(b) == 32 {
				d.identity = [32]byte(b)
			}
		case "list":
			for _, k := range child.GetChildren() {
				if id, pub, _, ok := parseKeyNode(k); ok {
					d.preKeys = append(d.preKeys, uploadedPreKey{id: id, pub: pub})
				}
			}
		case "skey":
			if id, pub, sig, ok := parseKeyNode(child); ok {
				d.signedID, d.signedPub, d.signedSig = id, pub, sig
			}
		}
	}
	c.log.Debug("stored prekeys", "jid", d.jid, "count", len(d.preKeys))
}

func parseKeyNode(n waBinary.Node) (id uint32, pub [32]byte, sig [64]byte, ok bool) {
	idBytes, _ := n.GetChildByTag("id").Content.([]byte)
	pubBytes, _ := n.GetChildByTag("value").Content.([]byte)
	if len(idBytes) != 3 || len(pubBytes) != 32 {
		return 0, pub, sig, false
	}
	id = uint32(idBytes[0])<<16 | uint32(idBytes[1])<<8 | uint32(idBytes[2])
	pub = [32]byte(pubBytes)
	if sigBytes, isBytes := n.GetChildByTag("signature").Content.([]byte); isBytes && len(sigBytes) == 64 {
		sig = [64]byte(sigBytes)
	}
	return id, pub, sig, true
}

func keyID(id uint32) []byte {
	return []byte{byte(id >> 16), byte(id >> 8), byte(id)}
}

func regIDBytes(id uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, id)
}

// bundleNode answers a prekey request for one device: a simulated contact's phone (device 0)
// or a linked device.
func (s *Server) bundleNode(ctx context.Context, jid types.JID) waBinary.Node {
	notFound := waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: []waBinary.Node{
		{Tag: "error", Attrs: waBinary.Attrs{"code": 404, "text": "item-not-found"}},
	}}
	if jid.Server != types.DefaultUserServer || !validPhone(jid.User) {
		return notFound
	}
	if jid.Device != 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.devices[jid.String()]
		if d == nil {
			return notFound
		}
		return d.bundleNode()
	}
	s.mu.Lock()
	off := s.notOnWA[jid.User]
	s.mu.Unlock()
	if off {
		return notFound
	}
	p, err := s.peer(ctx, jid.User)
	if err != nil {
		s.log.Error("create contact", "phone", jid.User, "err", err)
		return notFound
	}
	n, err := p.bundleNode(ctx)
	if err != nil {
		s.log.Error("contact prekey bundle", "phone", jid.User, "err", err)
		return notFound
	}
	return n
}

// bundleNode hands out one of the device's uploaded prekeys; the caller holds s.mu.
func (d *device) bundleNode() waBinary.Node {
	keysNodes := []waBinary.Node{
		{Tag: "registration", Content: regIDBytes(d.regID)},
		{Tag: "type", Content: []byte{5}},
		{Tag: "identity", Content: d.identity[:]},
		{Tag: "skey", Content: []waBinary.Node{
			{Tag: "id", Content: keyID(d.signedID)},
			{Tag: "value", Content: d.signedPub[:]},
			{Tag: "signature", Content: d.signedSig[:]},
		}},
	}
	if len(d.preKeys) > 0 {
		pk := d.preKeys[0]
		d.preKeys = d.preKeys[1:]
		keysNodes = append(keysNodes, waBinary.Node{Tag: "key", Content: []waBinary.Node{
			{Tag: "id", Content: keyID(pk.id)},
			{Tag: "value", Content: pk.pub[:]},
		}})
	}
	return waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": d.jid}, Content: keysNodes}
}

// handleUsync answers user sync queries: device lists (before sending) and contact lookups
// (IsOnWhatsApp). Other query kinds get an empty answer for each user.
func (c *conn) handleUsync(node *waBinary.Node, usync waBinary.Node) {
	d := c.loggedIn()
	if d == nil {
		c.replyError(node, 401, "not-authorized")
		return
	}
	s := c.srv
	var queries []string
	query := usync.GetChildByTag("query")
	for _, q := range query.GetChildren() {
		queries = append(queries, q.Tag)
	}
	var users []waBinary.Node
	list := usync.GetChildByTag("list")
	for _, u := range list.GetChildrenByTag("user") {
		jid, hasJID := u.Attrs["jid"].(types.JID)
		var contactQuery []byte
		if contact, ok := u.GetOptionalChildByTag("contact"); ok {
			switch v := contact.Content.(type) {
			case []byte:
				contactQuery = v
			case string:
				contactQuery = []byte(v)
			}
			if !hasJID {
				jid = userJID(digits(string(contactQuery)))
			}
		}
		if jid.User == "" {
			continue
		}
		jid = jid.ToNonAD()
		s.mu.Lock()
		onWA := !s.notOnWA[jid.User] && validPhone(jid.User)
		var content []waBinary.Node
		for _, q := range queries {
			switch q {
			case "devices":
				content = append(content, s.devicesNode(d, jid, onWA))
			case "contact":
				typ := "in"
				if !onWA {
					typ = "out"
				}
				content = append(content, waBinary.Node{Tag: "contact", Attrs: waBinary.Attrs{"type": typ}, Content: contactQuery})
			case "status":
				if onWA {
					content = append(content, waBinary.Node{Tag: "status", Attrs: waBinary.Attrs{"t": "0"}})
				}
			}
		}
		s.mu.Unlock()
		users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: content})
	}
	c.reply(node, waBinary.Node{
		Tag: "usync",
		Attrs: waBinary.Attrs{
			"sid":   usync.Attrs["sid"],
			"mode":  usync.Attrs["mode"],
			"index": "0",
			"last":  "true",
		},
		Content: []waBinary.Node{
			{Tag: "result"},
			{Tag: "list", Content: users},
		},
	})
}

// devicesNode lists a user's devices as the asking device should see them: a contact has its
// phone (device 0) plus any devices linked to that number here; the asker's own number lists
// only its linked devices, because the fake phone takes no copies of sent messages.
// The caller holds s.mu.
func (s *Server) devicesNode(asker *device, user types.JID, onWA bool) waBinary.Node {
	var ids []int
	if onWA {
		if user.User != asker.jid.User {
			ids = append(ids, 0)
		}
		for _, d := range s.devices {
			if d.jid.User == user.User {
				ids = append(ids, int(d.jid.Device))
			}
		}
		slices.Sort(ids)
	}
	list := make([]waBinary.Node, 0, len(ids))
	for _, id := range ids {
		attrs := waBinary.Attrs{"id": id}
		if id != 0 {
			attrs["key-index"] = id
		}
		list = append(list, waBinary.Node{Tag: "device", Attrs: attrs})
	}
	return waBinary.Node{Tag: "devices", Content: []waBinary.Node{
		{Tag: "device-list", Content: list},
		{Tag: "key-index-list", Attrs: waBinary.Attrs{"ts": strconv.FormatInt(time.Now().Unix(), 10)}},
	}}
}

func (c *conn) handleRemoveCompanion(node *waBinary.Node, child waBinary.Node) {
	d := c.loggedIn()
	jid, _ := child.Attrs["jid"].(types.JID)
	if d == nil || jid != d.jid {
		c.replyError(node, 403, "forbidden")
		return
	}
	s := c.srv
	s.mu.Lock()
	if s.devices[d.jid.String()] == d {
		delete(s.devices, d.jid.String())
	}
	s.notify()
	s.mu.Unlock()
	c.log.Info("client logged out", "jid", d.jid, "reason", child.Attrs["reason"])
	c.reply(node)
}
