package fakewa

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// outItem is a node waiting for (or kept for) a linked device. Messages stay until the
// client sends a receipt for them, so a client that drops its connection gets them again.
type outItem struct {
	node  waBinary.Node
	msgID string // set for messages, which are kept until receipted
}

// handleMessage takes a message the client sends: each <to> is decrypted by the simulated
// phone it is for (or forwarded to a linked device), the server acks, and every phone that
// could decrypt it answers with a delivery receipt.
func (c *conn) handleMessage(node *waBinary.Node) {
	s := c.srv
	d := c.loggedIn()
	ag := node.AttrGetter()
	id := ag.OptionalString("id")
	to, _ := node.Attrs["to"].(types.JID)
	s.mu.Lock()
	s.arrivals[id]++
	s.notify()
	s.mu.Unlock()
	if d == nil {
		c.send(ackNode(node, to, 401))
		return
	}

	var delivered []types.JID
	participants, _ := node.GetOptionalChildByTag("participants")
	for _, p := range participants.GetChildrenByTag("to") {
		dest, ok := p.Attrs["jid"].(types.JID)
		enc, hasEnc := p.GetOptionalChildByTag("enc")
		if !ok || !hasEnc {
			continue
		}
		if dest.Device != 0 {
			s.forward(d, node, dest, enc)
			continue
		}
		if s.decryptFor(c, d, id, dest, enc) {
			delivered = append(delivered, dest)
		}
	}
	c.send(ackNode(node, to, 0))
	for _, dest := range delivered {
		s.deliver(d, waBinary.Node{Tag: "receipt", Attrs: waBinary.Attrs{
			"id":   id,
			"from": dest,
			"t":    time.Now().Unix(),
		}}, "")
	}
}

func ackNode(msg *waBinary.Node, to types.JID, errCode int) waBinary.Node {
	attrs := waBinary.Attrs{
		"class": "message",
		"id":    msg.Attrs["id"],
		"t":     time.Now().Unix(),
	}
	if !to.IsEmpty() {
		attrs["from"] = to
	}
	if errCode != 0 {
		attrs["error"] = errCode
	}
	return waBinary.Node{Tag: "ack", Attrs: attrs}
}

// decryptFor lets the simulated phone dest decrypt its copy and records the text.
func (s *Server) decryptFor(c *conn, d *device, id string, dest types.JID, enc waBinary.Node) bool {
	phone := dest.User
	s.mu.Lock()
	p := s.peers[phone]
	s.mu.Unlock()
	ciphertext, _ := enc.Content.([]byte)
	encType, _ := enc.Attrs["type"].(string)
	if p == nil {
		c.log.Warn("message for a phone that never gave out keys", "to", phone, "id", id)
		return false
	}
	plain, err := p.decrypt(c.ctx, d.jid, encType, ciphertext)
	if err != nil {
		c.log.Warn("contact could not decrypt message", "to", phone, "id", id, "enc", encType, "err", err)
		return false
	}
	var msg waE2E.Message
	if err := proto.Unmarshal(plain, &msg); err != nil {
		c.log.Warn("contact got invalid message protobuf", "to", phone, "id", id, "err", err)
		return false
	}
	r := Received{
		ID:      id,
		From:    d.jid.User,
		To:      phone,
		Text:    textOf(&msg),
		Time:    time.Now(),
		EncType: encType,
	}
	s.mu.Lock()
	s.received[phone] = append(s.received[phone], r)
	s.sentBy[id] = d.jid
	s.notify()
	s.mu.Unlock()
	c.log.Info("contact received message", "to", phone, "id", id, "from", d.jid)
	return true
}

func textOf(msg *waE2E.Message) string {
	switch {
	case msg.Conversation != nil:
		return msg.GetConversation()
	case msg.ExtendedTextMessage != nil:
		return msg.GetExtendedTextMessage().GetText()
	case msg.GetDeviceSentMessage().GetMessage() != nil:
		return textOf(msg.GetDeviceSentMessage().GetMessage())
	}
	return ""
}

// forward passes a message copy meant for another linked device on to it, as the real
// server fans out messages between linked accounts.
func (s *Server) forward(sender *device, msg *waBinary.Node, dest types.JID, enc waBinary.Node) {
	s.mu.Lock()
	target := s.devices[dest.String()]
	s.mu.Unlock()
	if target == nil {
		s.log.Debug("message for an unknown device", "to", dest)
		return
	}
	attrs := waBinary.Attrs{
		"from": sender.jid,
		"id":   msg.Attrs["id"],
		"type": msg.Attrs["type"],
		"t":    time.Now().Unix(),
	}
	if to, ok := msg.Attrs["to"].(types.JID); ok && to.User == sender.jid.User {
		attrs["recipient"] = to // a copy for the sender's own other device
	}
	content := []waBinary.Node{enc}
	if di, ok := msg.GetOptionalChildByTag("device-identity"); ok {
		content = append(content, di)
	}
	id, _ := msg.Attrs["id"].(string)
	s.mu.Lock()
	s.sentBy[id] = sender.jid
	s.mu.Unlock()
	s.deliver(target, waBinary.Node{Tag: "message", Attrs: attrs, Content: content}, id)
}

// deliver sends a node to a linked device now if it is connected and logged in, and queues
// it otherwise. With a msgID the node is kept until the client's receipt for that ID.
func (s *Server) deliver(d *device, node waBinary.Node, msgID string) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	s.mu.Lock()
	var c *conn
	if d.ready {
		c = d.conn
	}
	if msgID != "" || c == nil {
		d.out = append(d.out, outItem{node: node, msgID: msgID})
	}
	s.mu.Unlock()
	if c != nil {
		c.send(node)
	}
}

// becomeReady runs when the client finished logging in (its passive iq): it sends what
// waited for the device and tells the client that the offline queue is empty.
func (c *conn) becomeReady() {
	s := c.srv
	d := c.loggedIn()
	if d == nil {
		return
	}
	d.outMu.Lock()
	s.mu.Lock()
	if d.conn != c {
		s.mu.Unlock()
		d.outMu.Unlock()
		return
	}
	d.ready = true
	items := slices.Clone(d.out)
	d.out = slices.DeleteFunc(d.out, func(it outItem) bool { return it.msgID == "" })
	s.notify()
	s.mu.Unlock()
	for _, it := range items {
		c.send(it.node)
	}
	d.outMu.Unlock()
	c.send(waBinary.Node{Tag: "ib", Content: []waBinary.Node{
		{Tag: "offline", Attrs: waBinary.Attrs{"count": len(items)}},
	}})
}

// handleReceipt records a receipt the client sends for a message it received, forwards read
// receipts to the linked device that sent the message, and acks.
func (c *conn) handleReceipt(node *waBinary.Node) {
	s := c.srv
	ag := node.AttrGetter()
	typ := ag.OptionalString("type")
	if typ == "" {
		typ = "delivered"
	}
	ids := []string{ag.OptionalString("id")}
	if list, ok := node.GetOptionalChildByTag("list"); ok {
		for _, item := range list.GetChildrenByTag("item") {
			if id, ok := item.Attrs["id"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	d := c.loggedIn()
	var forwardTo []*device
	s.mu.Lock()
	for _, id := range ids {
		s.receipts[id] = append(s.receipts[id], typ)
		if d != nil {
			// Retries are not implemented, so a retry receipt also ends redelivery.
			d.out = slices.DeleteFunc(d.out, func(it outItem) bool { return it.msgID == id })
		}
		if sender, ok := s.sentBy[id]; ok && (typ == "read" || typ == "played") {
			if sd := s.devices[sender.String()]; sd != nil {
				forwardTo = append(forwardTo, sd)
			}
		}
	}
	s.notify()
	s.mu.Unlock()
	if typ == "retry" {
		c.log.Warn("client could not decrypt a message and asked for a retry; retries are not implemented", "ids", ids)
	}
	attrs := waBinary.Attrs{"class": "receipt", "id": ids[0]}
	if to, ok := node.Attrs["to"].(types.JID); ok {
		attrs["from"] = to
	}
	if t, ok := node.Attrs["type"]; ok {
		attrs["type"] = t
	}
	c.send(waBinary.Node{Tag: "ack", Attrs: attrs})
	if d != nil {
		for _, sd := range forwardTo {
			s.deliver(sd, readReceiptNode(d.jid.ToNonAD(), ids, typ), "")
		}
	}
}

func readReceiptNode(from types.JID, ids []string, typ string) waBinary.Node {
	node := waBinary.Node{Tag: "receipt", Attrs: waBinary.Attrs{
		"id":   ids[0],
		"from": from,
		"type": typ,
		"t":    time.Now().Unix(),
	}}
	if len(ids) > 1 {
		items := make([]waBinary.Node, 0, len(ids)-1)
		for _, id := range ids[1:] {
			items = append(items, waBinary.Node{Tag: "item", Attrs: waBinary.Attrs{"id": id}})
		}
		node.Content = []waBinary.Node{{Tag: "list", Content: items}}
	}
	return node
}

// SendText makes the contact fromPhone send a text to the linked number toPhone, with
// pushName as the contact's profile name. Every device linked to toPhone gets it (now, or
// when it next logs in) and the client emits events.Message. It returns the message ID.
func (s *Server) SendText(ctx context.Context, fromPhone, toPhone, text, pushName string) (string, error) {
	return s.SendMessage(ctx, fromPhone, toPhone, &waE2E.Message{Conversation: proto.String(text)}, pushName)
}

// SendMessage is SendText for any message protobuf.
func (s *Server) SendMessage(ctx context.Context, fromPhone, toPhone string, msg *waE2E.Message, pushName string) (string, error) {
	fromPhone, toPhone = digits(fromPhone), digits(toPhone)
	if !validPhone(fromPhone) || !validPhone(toPhone) {
		return "", ErrInvalidPhone
	}
	s.mu.Lock()
	var targets []*device
	for _, d := range s.devices {
		if d.jid.User == toPhone {
			targets = append(targets, d)
		}
	}
	s.mu.Unlock()
	if len(targets) == 0 {
		return "", ErrNotLinked
	}
	p, err := s.peer(ctx, fromPhone)
	if err != nil {
		return "", err
	}
	plain, err := proto.Marshal(msg)
	if err != nil {
		return "", err
	}
	id := "3EB0" + strings.ToUpper(randomHex(9))
	for _, d := range targets {
		encType, ct, err := p.encrypt(ctx, d.jid, func() (*prekey.Bundle, error) { return s.deviceBundle(d) }, plain)
		if err != nil {
			return "", fmt.Errorf("encrypt for %s: %w", d.jid, err)
		}
		attrs := waBinary.Attrs{
			"from": userJID(fromPhone),
			"id":   id,
			"type": "text",
			"t":    time.Now().Unix(),
		}
		if pushName != "" {
			attrs["notify"] = pushName
		}
		s.deliver(d, waBinary.Node{Tag: "message", Attrs: attrs, Content: []waBinary.Node{
			{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ct},
		}}, id)
	}
	s.log.Info("contact sent message", "from", fromPhone, "to", toPhone, "id", id)
	return id, nil
}

// SendReadReceipt makes the contact with this phone number read messages it received
// (IDs from Received); the linked device that sent them gets a read receipt
// (events.Receipt of type read).
func (s *Server) SendReadReceipt(ctx context.Context, phone string, ids ...string) error {
	phone = digits(phone)
	if len(ids) == 0 {
		return nil
	}
	bySender := make(map[types.JID][]string)
	s.mu.Lock()
	for _, id := range ids {
		sender, ok := s.sentBy[id]
		if !ok || !slices.ContainsFunc(s.received[phone], func(r Received) bool { return r.ID == id }) {
			s.mu.Unlock()
			return fmt.Errorf("fakewa: %s did not receive message %s", phone, id)
		}
		bySender[sender] = append(bySender[sender], id)
	}
	targets := make(map[types.JID]*device)
	for sender := range bySender {
		targets[sender] = s.devices[sender.String()]
	}
	s.mu.Unlock()
	for sender, ids := range bySender {
		if d := targets[sender]; d != nil {
			s.deliver(d, readReceiptNode(userJID(phone), slices.Compact(ids), "read"), "")
		}
	}
	return ctx.Err()
}
