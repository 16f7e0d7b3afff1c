package fakewa

import (
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"

	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/util/gcmutil"
)

// handshake is the responder side of Noise_XX_25519_AESGCM_SHA256 as WhatsApp uses it.
// whatsmeow's socket.NoiseHandshake keeps the chaining key unexported, so the few lines of
// state are repeated here.
type handshake struct {
	hash    []byte
	salt    []byte
	key     cipher.AEAD
	counter uint32
}

func newHandshake(prologue []byte) (*handshake, error) {
	// The pattern name is exactly 32 bytes, so it is used as is for both hash and salt.
	h := &handshake{hash: []byte(socket.NoiseStartPattern)}
	h.salt = h.hash
	var err error
	if h.key, err = gcmutil.Prepare(h.hash); err != nil {
		return nil, err
	}
	h.authenticate(prologue)
	return h, nil
}

func (h *handshake) authenticate(data []byte) {
	sum := sha256.Sum256(append(append([]byte{}, h.hash...), data...))
	h.hash = sum[:]
}

func (h *handshake) encrypt(plaintext []byte) []byte {
	ct := h.key.Seal(nil, ivFor(h.counter), plaintext, h.hash)
	h.counter++
	h.authenticate(ct)
	return ct
}

func (h *handshake) decrypt(ciphertext []byte) ([]byte, error) {
	pt, err := h.key.Open(nil, ivFor(h.counter), ciphertext, h.hash)
	h.counter++
	if err != nil {
		return nil, err
	}
	h.authenticate(ciphertext)
	return pt, nil
}

func (h *handshake) mixDH(priv, pub [32]byte) error {
	secret, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return fmt.Errorf("x25519: %w", err)
	}
	write, read, err := expand(h.salt, secret)
	if err != nil {
		return err
	}
	h.salt = write
	h.counter = 0
	h.key, err = gcmutil.Prepare(read)
	return err
}

// split returns the transport ciphers from the server's point of view: the client writes
// with the first key, so the server reads with it.
func (h *handshake) split() (read, write cipher.AEAD, err error) {
	clientWrite, clientRead, err := expand(h.salt, nil)
	if err != nil {
		return nil, nil, err
	}
	if read, err = gcmutil.Prepare(clientWrite); err != nil {
		return nil, nil, err
	}
	if write, err = gcmutil.Prepare(clientRead); err != nil {
		return nil, nil, err
	}
	return read, write, nil
}

func expand(salt, secret []byte) (a, b []byte, err error) {
	r := hkdf.New(sha256.New, secret, salt, nil)
	a, b = make([]byte, 32), make([]byte, 32)
	if _, err = io.ReadFull(r, a); err != nil {
		return nil, nil, err
	}
	if _, err = io.ReadFull(r, b); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

// ivFor is the Noise nonce WhatsApp uses: 8 zero bytes and a 4-byte big-endian counter.
func ivFor(counter uint32) []byte {
	iv := make([]byte, 12)
	binary.BigEndian.PutUint32(iv[8:], counter)
	return iv
}
