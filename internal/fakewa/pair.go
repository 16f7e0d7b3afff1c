package fakewa

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mau.fi/libsignal/ecc"
	"golang.org/x/crypto/curve25519"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/hkdfutil"
	"go.mau.fi/whatsmeow/util/keys"
)

// qrRefs is how many QR refs the server hands out per connection, like the real one
// (the client shows them 60 s, then 20 s each).
const qrRefs = 6

// startQR sends the pair-device refs that the client turns into QR codes.
func (c *conn) startQR() error {
	refs := make([]waBinary.Node, qrRefs)
	c.srv.mu.Lock()
	for i := range refs {
		ref := "2@" + base64.StdEncoding.EncodeToString(randomBytes(24))
		c.srv.refs[ref] = c
		refs[i] = waBinary.Node{Tag: "ref", Content: []byte(ref)}
	}
	c.srv.mu.Unlock()
	return c.send(waBinary.Node{
		Tag: "iq",
		Attrs: waBinary.Attrs{
			"from":  types.ServerJID,
			"type":  "set",
			"id":    c.newID(),
			"xmlns": "md",
		},
		Content: []waBinary.Node{{Tag: "pair-device", Content: refs}},
	})
}

// ScanQR plays the phone scanning a QR code that the client shows: qr is the whole string
// from whatsmeow's QR channel (ref,noiseKey,identityKey,advSecret) and phone the number
// being linked, in E.164 digits. It returns once the client has confirmed the pairing; the
// client then reconnects and logs in by itself (wait for events.Connected).
func (s *Server) ScanQR(ctx context.Context, qr, phone string) error {
	phone = digits(phone)
	if !validPhone(phone) {
		return ErrInvalidPhone
	}
	parts := strings.Split(strings.TrimSpace(qr), ",")
	if len(parts) != 4 {
		return fmt.Errorf("%w: want 4 comma-separated parts", ErrUnknownQR)
	}
	noisePub, err1 := base64.StdEncoding.DecodeString(parts[1])
	identityPub, err2 := base64.StdEncoding.DecodeString(parts[2])
	advSecret, err3 := base64.StdEncoding.DecodeString(parts[3])
	if err := errors.Join(err1, err2, err3); err != nil || len(identityPub) != 32 {
		return fmt.Errorf("%w: bad key encoding", ErrUnknownQR)
	}
	s.mu.Lock()
	c := s.refs[parts[0]]
	s.mu.Unlock()
	if c == nil || !bytes.Equal(noisePub, c.static[:]) || !bytes.Equal(identityPub, c.reg.GetEIdent()) {
		return ErrUnknownQR
	}
	return s.pair(ctx, c, phone, advSecret, [32]byte(identityPub))
}

// pair sends pair-success to an unpaired client and waits for its signed confirmation.
func (s *Server) pair(ctx context.Context, c *conn, phone string, advSecret []byte, clientIdentity [32]byte) error {
	if !c.pairing.CompareAndSwap(false, true) {
		return errors.New("fakewa: this client is already pairing")
	}
	primary, err := s.peer(ctx, phone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.nextDevice[phone]++
	n := s.nextDevice[phone]
	s.mu.Unlock()
	jid := types.JID{User: phone, Device: n, Server: types.DefaultUserServer}
	lid := types.JID{User: lidFor(phone), Device: n, Server: types.HiddenUserServer}

	details, err := proto.Marshal(&waAdv.ADVDeviceIdentity{
		RawID:     proto.Uint32(uint32(time.Now().UnixNano())),
		Timestamp: proto.Uint64(uint64(time.Now().Unix())),
		KeyIndex:  proto.Uint32(uint32(n)),
	})
	if err != nil {
		return err
	}
	phoneKey := primary.dev.IdentityKey
	accountSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*phoneKey.Priv),
		concat([]byte{6, 0}, details, clientIdentity[:]))
	signed, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentity{
		Details:             details,
		AccountSignatureKey: phoneKey.Pub[:],
		AccountSignature:    accountSig[:],
	})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, advSecret)
	mac.Write(signed)
	container, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentityHMAC{Details: signed, HMAC: mac.Sum(nil)})
	if err != nil {
		return err
	}

	done := make(chan error, 1)
	id := c.newID()
	c.expect(id, func(resp *waBinary.Node) {
		done <- s.finishPairing(c, resp, jid, lid, details, phoneKey, clientIdentity)
	})
	err = c.send(waBinary.Node{
		Tag: "iq",
		Attrs: waBinary.Attrs{
			"from":  types.ServerJID,
			"type":  "set",
			"id":    id,
			"xmlns": "md",
		},
		Content: []waBinary.Node{{Tag: "pair-success", Content: []waBinary.Node{
			{Tag: "device-identity", Content: container},
			{Tag: "platform", Attrs: waBinary.Attrs{"name": "android"}},
			{Tag: "device", Attrs: waBinary.Attrs{"jid": jid, "lid": lid}},
		}}},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrClientGone, err)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	select {
	case err := <-done:
		return err
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrClientGone
}

// finishPairing checks the client's pair-device-sign answer, registers the device and sends
// the 515 stream error after which the client logs in with its new identity.
func (s *Server) finishPairing(c *conn, resp *waBinary.Node, jid, lid types.JID, details []byte, phoneKey *keys.KeyPair, clientIdentity [32]byte) error {
	if resp.Attrs["type"] != "result" {
		return fmt.Errorf("%w: %s", ErrPairingRejected, resp.XMLString())
	}
	identityBytes, _ := resp.GetChildByTag("pair-device-sign", "device-identity").Content.([]byte)
	var signed waAdv.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(identityBytes, &signed); err != nil {
		return fmt.Errorf("%w: bad device identity: %v", ErrPairingRejected, err)
	}
	msg := concat([]byte{6, 1}, details, clientIdentity[:], phoneKey.Pub[:])
	if len(signed.DeviceSignature) != 64 ||
		!ecc.VerifySignature(ecc.NewDjbECPublicKey(clientIdentity), msg, [64]byte(signed.DeviceSignature)) {
		return fmt.Errorf("%w: bad device signature", ErrPairingRejected)
	}
	d := &device{
		jid:       jid,
		lid:       lid,
		pairedAt:  time.Now(),
		noisePub:  c.static,
		identity:  clientIdentity,
		regID:     regIDFrom(c.reg.GetERegid()),
		signedID:  keyIDFrom(c.reg.GetESkeyID()),
		signedPub: [32]byte(padTo(c.reg.GetESkeyVal(), 32)),
		signedSig: [64]byte(padTo(c.reg.GetESkeySig(), 64)),
	}
	s.mu.Lock()
	s.devices[jid.String()] = d
	for ref, rc := range s.refs {
		if rc == c {
			delete(s.refs, ref)
		}
	}
	s.notify()
	s.mu.Unlock()
	s.log.Info("device paired", "jid", jid)
	c.send(waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "515"}})
	return nil
}

// codePairing is a pending "link with phone number" request from an unpaired client.
type codePairing struct {
	conn         *conn
	ref          []byte
	wrappedEph   []byte // the client's ephemeral key, encrypted with the code
	primaryEph   *keys.KeyPair
	companionEph []byte
	finished     chan codeResult
}

type codeResult struct {
	advSecret []byte
	identity  [32]byte
	err       error
}

func (c *conn) handleLinkCode(node *waBinary.Node, reg waBinary.Node) {
	s := c.srv
	ag := reg.AttrGetter()
	jid, _ := reg.Attrs["jid"].(types.JID)
	switch ag.OptionalString("stage") {
	case "companion_hello":
		wrapped, _ := reg.GetChildByTag("link_code_pairing_wrapped_companion_ephemeral_pub").Content.([]byte)
		if c.reg == nil || len(wrapped) != 80 || !validPhone(jid.User) {
			c.replyError(node, 400, "bad-request")
			return
		}
		ref := []byte(base64.StdEncoding.EncodeToString(randomBytes(24)))
		s.mu.Lock()
		s.codes[jid.User] = &codePairing{conn: c, ref: ref, wrappedEph: wrapped, finished: make(chan codeResult, 1)}
		s.notify()
		s.mu.Unlock()
		c.reply(node, waBinary.Node{Tag: "link_code_companion_reg", Content: []waBinary.Node{
			{Tag: "link_code_pairing_ref", Content: ref},
		}})
	case "companion_finish":
		s.mu.Lock()
		cp := s.codes[jid.User]
		s.mu.Unlock()
		ref, _ := reg.GetChildByTag("link_code_pairing_ref").Content.([]byte)
		if cp == nil || cp.conn != c || cp.primaryEph == nil || !bytes.Equal(ref, cp.ref) {
			c.replyError(node, 404, "item-not-found")
			return
		}
		wrapped, _ := reg.GetChildByTag("link_code_pairing_wrapped_key_bundle").Content.([]byte)
		res := s.openKeyBundle(c, cp, jid.User, wrapped)
		if res.err != nil {
			c.replyError(node, 400, "bad-request")
		} else {
			c.reply(node)
		}
		cp.finished <- res
	default:
		c.replyError(node, 400, "bad-request")
	}
}

func (s *Server) openKeyBundle(c *conn, cp *codePairing, phone string, wrapped []byte) codeResult {
	if len(wrapped) < 32+12+16 {
		return codeResult{err: errors.New("key bundle too short")}
	}
	ephShared, err := curve25519.X25519(cp.primaryEph.Priv[:], cp.companionEph)
	if err != nil {
		return codeResult{err: err}
	}
	key := hkdfutil.SHA256(ephShared, wrapped[:32], []byte("link_code_pairing_key_bundle_encryption_key"), 32)
	block, err := aes.NewCipher(key)
	if err != nil {
		return codeResult{err: err}
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return codeResult{err: err}
	}
	plain, err := gcm.Open(nil, wrapped[32:44], wrapped[44:], nil)
	if err != nil || len(plain) != 96 {
		// The client decrypted our ephemeral key with its own code: a different code typed on
		// the phone gives a different shared secret.
		return codeResult{err: ErrWrongCode}
	}
	companionIdentity := [32]byte(plain[:32])
	if !bytes.Equal(companionIdentity[:], c.reg.GetEIdent()) {
		return codeResult{err: errors.New("key bundle identity does not match the registration")}
	}
	primary, err := s.peer(c.ctx, phone)
	if err != nil {
		return codeResult{err: err}
	}
	identityShared, err := curve25519.X25519(primary.dev.IdentityKey.Priv[:], companionIdentity[:])
	if err != nil {
		return codeResult{err: err}
	}
	adv := hkdfutil.SHA256(concat(ephShared, identityShared, plain[64:96]), nil, []byte("adv_secret"), 32)
	return codeResult{advSecret: adv, identity: companionIdentity}
}

// PairWithCode plays the user typing the pairing code that client.PairPhone returned into
// the phone with this number. It returns once the client has confirmed the pairing; the
// client then logs in by itself (wait for events.Connected).
func (s *Server) PairWithCode(ctx context.Context, phone, code string) error {
	phone = digits(phone)
	code = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(code), "-", ""))
	s.mu.Lock()
	cp := s.codes[phone]
	s.mu.Unlock()
	if cp == nil {
		return ErrNoPairingCode
	}
	if len(code) != 8 {
		return ErrWrongCode
	}
	c := cp.conn
	companionEph, err := codeCrypt(code, cp.wrappedEph[:32], cp.wrappedEph[32:48], cp.wrappedEph[48:80])
	if err != nil {
		return err
	}
	primary, err := s.peer(ctx, phone)
	if err != nil {
		return err
	}
	eph := keys.NewKeyPair()
	salt, iv := randomBytes(32), randomBytes(16)
	wrappedPub, err := codeCrypt(code, salt, iv, eph.Pub[:])
	if err != nil {
		return err
	}
	s.mu.Lock()
	cp.primaryEph, cp.companionEph = eph, companionEph
	s.mu.Unlock()
	err = c.send(waBinary.Node{
		Tag: "notification",
		Attrs: waBinary.Attrs{
			"from": types.ServerJID,
			"id":   c.newID(),
			"type": "link_code_companion_reg",
			"t":    time.Now().Unix(),
		},
		Content: []waBinary.Node{{Tag: "link_code_companion_reg", Content: []waBinary.Node{
			{Tag: "link_code_pairing_ref", Content: cp.ref},
			{Tag: "link_code_pairing_wrapped_primary_ephemeral_pub", Content: concat(salt, iv, wrappedPub)},
			{Tag: "primary_identity_pub", Content: primary.dev.IdentityKey.Pub[:]},
		}}},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrClientGone, err)
	}
	var res codeResult
	select {
	case res = <-cp.finished:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClientGone
	}
	s.mu.Lock()
	if s.codes[phone] == cp {
		delete(s.codes, phone)
	}
	s.mu.Unlock()
	if res.err != nil {
		return res.err
	}
	return s.pair(ctx, c, phone, res.advSecret, res.identity)
}

// codeCrypt is the AES-CTR wrapping of ephemeral keys under a key derived from the code.
func codeCrypt(code string, salt, iv, data []byte) ([]byte, error) {
	key, err := pbkdf2.Key(sha256.New, code, salt, 2<<16, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(data))
	cipher.NewCTR(block, iv).XORKeyStream(out, data)
	return out, nil
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func regIDFrom(b []byte) uint32 {
	var id uint32
	for _, x := range b {
		id = id<<8 | uint32(x)
	}
	return id
}

func keyIDFrom(b []byte) uint32 { return regIDFrom(b) }

func padTo(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}
