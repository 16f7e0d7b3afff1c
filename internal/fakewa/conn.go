package fakewa

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
)

// closeDelay is how long the server waits after a fatal stream error or login failure before
// it closes the socket, so that the client handles the node before it sees the disconnect.
const closeDelay = time.Second

// conn is one websocket connection from a client.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	buf        []byte
	headerSeen bool

	readKey, writeKey cipher.AEAD
	readCounter       uint32
	writeMu           sync.Mutex
	writeCounter      uint32

	static  [32]byte                                           // the client's Noise static key
	reg     *waWa6.ClientPayload_DevicePairingRegistrationData // set while unpaired
	pairing atomic.Bool                                        // a pair-success is in flight
	device  *device                                            // set at login; guarded by srv.mu
	idSeq   atomic.Uint64

	waitMu  sync.Mutex
	waiters map[string]func(*waBinary.Node)
}

func (s *Server) handleWebsocket(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"web.whatsapp.com"}})
	if err != nil {
		s.log.Warn("websocket accept", "err", err)
		return
	}
	ws.SetReadLimit(socket.FrameMaxSize + 16)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: s, ws: ws, ctx: ctx, cancel: cancel, log: s.log, waiters: make(map[string]func(*waBinary.Node))}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		ws.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.serve()
}

func (c *conn) serve() {
	defer c.cleanup()
	payload, err := c.handshake()
	if err != nil {
		c.log.Warn("noise handshake failed", "err", err)
		return
	}
	if payload.DevicePairingData != nil {
		c.reg = payload.DevicePairingData
		c.log.Debug("unpaired client connected")
		if err := c.startQR(); err != nil {
			c.log.Warn("send pair-device", "err", err)
			return
		}
	} else {
		c.login(payload)
	}
	for {
		node, err := c.readNode()
		if err != nil {
			if c.ctx.Err() == nil && websocket.CloseStatus(err) == -1 {
				c.log.Debug("connection ended", "err", err)
			}
			return
		}
		c.handle(node)
	}
}

func (c *conn) cleanup() {
	c.cancel()
	c.ws.CloseNow()
	s := c.srv
	s.mu.Lock()
	delete(s.conns, c)
	for ref, rc := range s.refs {
		if rc == c {
			delete(s.refs, ref)
		}
	}
	for phone, cp := range s.codes {
		if cp.conn == c {
			delete(s.codes, phone)
		}
	}
	if d := c.device; d != nil && d.conn == c {
		d.conn = nil
		d.ready = false
		s.notify()
	}
	s.mu.Unlock()
	c.waitMu.Lock()
	c.waiters = nil
	c.waitMu.Unlock()
}

func (c *conn) closeNow() {
	c.cancel()
	c.ws.CloseNow()
}

// closeSoon closes the socket after closeDelay without blocking the caller.
func (c *conn) closeSoon() {
	time.AfterFunc(closeDelay, func() {
		c.ws.Close(websocket.StatusNormalClosure, "")
		c.cancel()
	})
}

// readFrame returns the next length-prefixed frame, reading websocket messages as needed.
func (c *conn) readFrame() ([]byte, error) {
	for {
		if len(c.buf) >= socket.FrameLengthSize {
			n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
			if len(c.buf) >= socket.FrameLengthSize+n {
				frame := bytes.Clone(c.buf[socket.FrameLengthSize : socket.FrameLengthSize+n])
				c.buf = c.buf[socket.FrameLengthSize+n:]
				return frame, nil
			}
		}
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageBinary {
			continue
		}
		if !c.headerSeen {
			if !bytes.HasPrefix(data, socket.WAConnHeader) {
				return nil, fmt.Errorf("bad connection header %x", data[:min(len(data), 4)])
			}
			data = data[len(socket.WAConnHeader):]
			c.headerSeen = true
		}
		c.buf = append(c.buf, data...)
	}
}

func (c *conn) writeFrame(data []byte) error {
	frame := make([]byte, socket.FrameLengthSize+len(data))
	frame[0], frame[1], frame[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(frame[socket.FrameLengthSize:], data)
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageBinary, frame)
}

func (c *conn) handshake() (*waWa6.ClientPayload, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.ws.CloseNow()
		}
	})
	defer stop()

	frame, err := c.readFrame()
	if err != nil {
		return nil, fmt.Errorf("read client hello: %w", err)
	}
	var hello waWa6.HandshakeMessage
	if err := proto.Unmarshal(frame, &hello); err != nil {
		return nil, fmt.Errorf("unmarshal client hello: %w", err)
	}
	clientEph := hello.GetClientHello().GetEphemeral()
	if len(clientEph) != 32 {
		return nil, errors.New("client hello without ephemeral key")
	}
	hs, err := newHandshake(socket.WAConnHeader)
	if err != nil {
		return nil, err
	}
	hs.authenticate(clientEph)
	eph := keys.NewKeyPair()
	hs.authenticate(eph.Pub[:])
	if err := hs.mixDH(*eph.Priv, [32]byte(clientEph)); err != nil {
		return nil, err
	}
	staticCT := hs.encrypt(c.srv.static.Pub[:])
	if err := hs.mixDH(*c.srv.static.Priv, [32]byte(clientEph)); err != nil {
		return nil, err
	}
	certCT := hs.encrypt(c.srv.certs)
	data, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:],
		Static:    staticCT,
		Payload:   certCT,
	}})
	if err != nil {
		return nil, err
	}
	if err := c.writeFrame(data); err != nil {
		return nil, fmt.Errorf("send server hello: %w", err)
	}

	if frame, err = c.readFrame(); err != nil {
		return nil, fmt.Errorf("read client finish: %w", err)
	}
	var finish waWa6.HandshakeMessage
	if err := proto.Unmarshal(frame, &finish); err != nil {
		return nil, fmt.Errorf("unmarshal client finish: %w", err)
	}
	static, err := hs.decrypt(finish.GetClientFinish().GetStatic())
	if err != nil || len(static) != 32 {
		return nil, fmt.Errorf("decrypt client static: %v", err)
	}
	copy(c.static[:], static)
	if err := hs.mixDH(*eph.Priv, c.static); err != nil {
		return nil, err
	}
	payloadBytes, err := hs.decrypt(finish.GetClientFinish().GetPayload())
	if err != nil {
		return nil, fmt.Errorf("decrypt client payload: %w", err)
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(payloadBytes, &payload); err != nil {
		return nil, fmt.Errorf("unmarshal client payload: %w", err)
	}
	if c.readKey, c.writeKey, err = hs.split(); err != nil {
		return nil, err
	}
	return &payload, nil
}

func (c *conn) readNode() (*waBinary.Node, error) {
	for {
		frame, err := c.readFrame()
		if err != nil {
			return nil, err
		}
		plain, err := c.readKey.Open(nil, ivFor(c.readCounter), frame, nil)
		c.readCounter++
		if err != nil {
			return nil, fmt.Errorf("decrypt frame: %w", err)
		}
		data, err := waBinary.Unpack(plain)
		if err != nil {
			c.log.Warn("unpack frame", "err", err)
			continue
		}
		node, err := waBinary.Unmarshal(data)
		if err != nil {
			c.log.Warn("decode node", "err", err, "hex", hex.EncodeToString(data))
			continue
		}
		return node, nil
	}
}

// send encrypts and writes one node. Errors are logged and returned; a broken connection is
// noticed by the read loop.
func (c *conn) send(node waBinary.Node) error {
	data, err := waBinary.Marshal(node)
	if err != nil {
		c.log.Error("marshal node", "tag", node.Tag, "err", err)
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	ct := c.writeKey.Seal(nil, ivFor(c.writeCounter), data, nil)
	c.writeCounter++
	if err := c.writeFrame(ct); err != nil {
		c.log.Debug("write node", "tag", node.Tag, "err", err)
		return err
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("sent", "node", node.XMLString())
	}
	return nil
}

func (c *conn) newID() string {
	return "fakewa-" + strconv.FormatUint(c.idSeq.Add(1), 10)
}

// expect registers fn to run (on the read loop) when the client answers the iq with this ID.
func (c *conn) expect(id string, fn func(*waBinary.Node)) {
	c.waitMu.Lock()
	defer c.waitMu.Unlock()
	if c.waiters != nil {
		c.waiters[id] = fn
	}
}

func (c *conn) takeWaiter(id string) func(*waBinary.Node) {
	c.waitMu.Lock()
	defer c.waitMu.Unlock()
	fn := c.waiters[id]
	delete(c.waiters, id)
	return fn
}

func (c *conn) streamError(code, conflict string) {
	node := waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": code}}
	if conflict != "" {
		node.Content = []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": conflict}}}
	}
	c.send(node)
	c.closeSoon()
}

func (c *conn) handle(node *waBinary.Node) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("received", "node", node.XMLString())
	}
	switch node.Tag {
	case "iq":
		c.handleIQ(node)
	case "message":
		c.handleMessage(node)
	case "receipt":
		c.handleReceipt(node)
	case "ack", "presence", "chatstate":
		// Acks of what the server sent need nothing; presence goes nowhere.
	default:
		c.log.Debug("unhandled node", "tag", node.Tag, "node", node.XMLString())
	}
}

func (c *conn) login(p *waWa6.ClientPayload) {
	s := c.srv
	jid := types.JID{User: strconv.FormatUint(p.GetUsername(), 10), Device: uint16(p.GetDevice()), Server: types.DefaultUserServer}
	s.mu.Lock()
	d := s.devices[jid.String()]
	if d == nil || d.noisePub != c.static {
		s.mu.Unlock()
		c.log.Info("refusing login of unknown device", "jid", jid)
		c.send(waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "401", "location": "fakewa"}})
		c.closeSoon()
		return
	}
	old := d.conn
	d.conn = c
	d.ready = false
	c.device = d
	s.notify()
	s.mu.Unlock()
	if old != nil {
		old.streamError("", "replaced")
	}
	c.log.Info("device logged in", "jid", jid)
	c.send(waBinary.Node{Tag: "success", Attrs: waBinary.Attrs{
		"t":        time.Now().Unix(),
		"lid":      d.lid,
		"location": "fakewa",
		"creation": d.pairedAt.Unix(),
	}})
}

func (c *conn) loggedIn() *device {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.device
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
