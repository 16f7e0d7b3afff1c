package fakewa

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/libsignal/util/optional"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
)

var serializer = store.SignalProtobufSerializer

// peer is a simulated phone (device 0 of a number): a contact that receives and sends
// messages, or the primary phone of a linked account. Its whatsmeow store.Device is its
// Signal store.
type peer struct {
	phone string
	mu    sync.Mutex // libsignal sessions are not safe for concurrent use
	dev   *store.Device
}

// peer returns the simulated phone for a number, creating it on first use.
func (s *Server) peer(ctx context.Context, phone string) (*peer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.peers[phone]; p != nil {
		return p, nil
	}
	if s.closed {
		return nil, errors.New("fakewa: server closed")
	}
	dev := s.store.NewDevice()
	jid := userJID(phone)
	dev.ID = &jid
	// The device table wants a complete account identity; a phone has none, so fill it.
	dev.Account = &waAdv.ADVSignedDeviceIdentity{
		Details:             []byte{0},
		AccountSignature:    make([]byte, 64),
		AccountSignatureKey: dev.IdentityKey.Pub[:],
		DeviceSignature:     make([]byte, 64),
	}
	if err := s.store.PutDevice(ctx, dev); err != nil {
		return nil, fmt.Errorf("store contact %s: %w", phone, err)
	}
	p := &peer{phone: phone, dev: dev}
	s.peers[phone] = p
	return p, nil
}

// bundleNode creates a fresh one-time prekey and returns the phone's prekey bundle.
func (p *peer) bundleNode(ctx context.Context) (waBinary.Node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pk, err := p.dev.PreKeys.GenOnePreKey(ctx)
	if err != nil {
		return waBinary.Node{}, err
	}
	spk := p.dev.SignedPreKey
	return waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": userJID(p.phone)}, Content: []waBinary.Node{
		{Tag: "registration", Content: regIDBytes(p.dev.RegistrationID)},
		{Tag: "type", Content: []byte{ecc.DjbType}},
		{Tag: "identity", Content: p.dev.IdentityKey.Pub[:]},
		{Tag: "skey", Content: []waBinary.Node{
			{Tag: "id", Content: keyID(spk.KeyID)},
			{Tag: "value", Content: spk.Pub[:]},
			{Tag: "signature", Content: spk.Signature[:]},
		}},
		{Tag: "key", Content: []waBinary.Node{
			{Tag: "id", Content: keyID(pk.KeyID)},
			{Tag: "value", Content: pk.Pub[:]},
		}},
	}}, nil
}

// decrypt opens a message that the device from sent to this phone, and removes the padding.
func (p *peer) decrypt(ctx context.Context, from types.JID, encType string, ciphertext []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := from.SignalAddress()
	cipher := session.NewCipher(session.NewBuilderFromSignal(p.dev, addr, serializer), addr)
	var plain []byte
	var err error
	switch encType {
	case "pkmsg":
		msg, perr := protocol.NewPreKeySignalMessageFromBytes(ciphertext, serializer.PreKeySignalMessage, serializer.SignalMessage)
		if perr != nil {
			return nil, fmt.Errorf("parse pkmsg: %w", perr)
		}
		plain, err = cipher.DecryptMessage(ctx, msg)
		if errors.Is(err, signalerror.ErrUntrustedIdentity) {
			// The sender re-registered (a new pairing); trust the new identity, like whatsmeow.
			if err = p.forget(ctx, addr); err == nil {
				plain, err = cipher.DecryptMessage(ctx, msg)
			}
		}
	case "msg":
		msg, perr := protocol.NewSignalMessageFromBytes(ciphertext, serializer.SignalMessage)
		if perr != nil {
			return nil, fmt.Errorf("parse msg: %w", perr)
		}
		plain, err = cipher.Decrypt(ctx, msg)
	default:
		return nil, fmt.Errorf("unsupported enc type %q", encType)
	}
	if err != nil {
		return nil, err
	}
	return unpad(plain)
}

// encrypt encrypts plaintext for a linked device, starting a session from the device's
// uploaded keys if there is none. It returns "pkmsg" or "msg" and the ciphertext.
func (p *peer) encrypt(ctx context.Context, to types.JID, bundle func() (*prekey.Bundle, error), plaintext []byte) (string, []byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := to.SignalAddress()
	builder := session.NewBuilderFromSignal(p.dev, addr, serializer)
	has, err := p.dev.ContainsSession(ctx, addr)
	if err != nil {
		return "", nil, err
	}
	if !has {
		b, err := bundle()
		if err != nil {
			return "", nil, err
		}
		err = builder.ProcessBundle(ctx, b)
		if errors.Is(err, signalerror.ErrUntrustedIdentity) {
			if err = p.forget(ctx, addr); err == nil {
				err = builder.ProcessBundle(ctx, b)
			}
		}
		if err != nil {
			return "", nil, fmt.Errorf("process bundle of %s: %w", to, err)
		}
	}
	msg, err := session.NewCipher(builder, addr).Encrypt(ctx, pad(plaintext))
	if err != nil {
		return "", nil, err
	}
	typ := "msg"
	if msg.Type() == protocol.PREKEY_TYPE {
		typ = "pkmsg"
	}
	return typ, msg.Serialize(), nil
}

func (p *peer) forget(ctx context.Context, addr *protocol.SignalAddress) error {
	if err := p.dev.Identities.DeleteIdentity(ctx, addr.String()); err != nil {
		return err
	}
	return p.dev.Sessions.DeleteSession(ctx, addr.String())
}

// bundle builds a prekey bundle from what the device uploaded, handing out one prekey.
func (s *Server) deviceBundle(d *device) (*prekey.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.identity == [32]byte{} || d.signedPub == [32]byte{} {
		return nil, fmt.Errorf("device %s has no keys", d.jid)
	}
	preKeyID := optional.NewEmptyUint32()
	var preKey ecc.ECPublicKeyable
	if len(d.preKeys) > 0 {
		pk := d.preKeys[0]
		d.preKeys = d.preKeys[1:]
		preKeyID = optional.NewOptionalUint32(pk.id)
		preKey = ecc.NewDjbECPublicKey(pk.pub)
	}
	return prekey.NewBundle(d.regID, uint32(d.jid.Device), preKeyID, d.signedID,
		preKey, ecc.NewDjbECPublicKey(d.signedPub), d.signedSig,
		identity.NewKey(ecc.NewDjbECPublicKey(d.identity))), nil
}

// pad adds WhatsApp's v2 padding: 1 to 15 bytes, each holding the padding length.
func pad(plaintext []byte) []byte {
	var b [1]byte
	rand.Read(b[:])
	n := b[0] & 0xf
	if n == 0 {
		n = 0xf
	}
	return append(bytes.Clone(plaintext), bytes.Repeat([]byte{n}, int(n))...)
}

func unpad(plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, errors.New("empty plaintext")
	}
	n := int(plaintext[len(plaintext)-1])
	if n == 0 || n > len(plaintext) || !bytes.Equal(plaintext[len(plaintext)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errors.New("bad padding")
	}
	return plaintext[:len(plaintext)-n], nil
}
