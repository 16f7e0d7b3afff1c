package fakewa

import (
	"crypto/sha256"
	"fmt"
	"time"

	"go.mau.fi/libsignal/ecc"
	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/util/keys"
)

// rootSeed fixes the fake certificate root. Every Server in a process signs with the same
// root, because whatsmeow.WACertPubKey, which the client checks, is one package global.
const rootSeed = "github.com/leadmaster/leadmaster/internal/fakewa root key v1"

const intermediateSerial = 4242

func rootKeyPair() *keys.KeyPair {
	priv := sha256.Sum256([]byte(rootSeed))
	clamp(&priv)
	return keys.NewKeyPairFromPrivateKey(priv)
}

// RootPublicKey returns the public key of the fake certificate root. Tests and the demo put
// it in whatsmeow.WACertPubKey before connecting a client to a fake server; production code
// must never do that.
func RootPublicKey() [32]byte {
	return *rootKeyPair().Pub
}

func clamp(priv *[32]byte) {
	priv[0] &= 248
	priv[31] &= 127
	priv[31] |= 64
}

// certChain builds the chain the client verifies in the handshake: an intermediate signed by
// the root, and a leaf for the server's static Noise key signed by the intermediate.
func certChain(static *keys.KeyPair) ([]byte, error) {
	root := rootKeyPair()
	inter := keys.NewKeyPair()
	now := time.Now()

	interDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(intermediateSerial),
		IssuerSerial: proto.Uint32(0),
		Key:          inter.Pub[:],
		NotBefore:    proto.Uint64(uint64(now.Add(-time.Hour).Unix())),
		NotAfter:     proto.Uint64(uint64(now.Add(365 * 24 * time.Hour).Unix())),
	})
	if err != nil {
		return nil, fmt.Errorf("marshal intermediate: %w", err)
	}
	leafDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(intermediateSerial + 1),
		IssuerSerial: proto.Uint32(intermediateSerial),
		Key:          static.Pub[:],
		NotBefore:    proto.Uint64(uint64(now.Add(-time.Hour).Unix())),
		NotAfter:     proto.Uint64(uint64(now.Add(30 * 24 * time.Hour).Unix())),
	})
	if err != nil {
		return nil, fmt.Errorf("marshal leaf: %w", err)
	}
	interSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*root.Priv), interDetails)
	leafSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*inter.Priv), leafDetails)
	return proto.Marshal(&waCert.CertChain{
		Intermediate: &waCert.CertChain_NoiseCertificate{Details: interDetails, Signature: interSig[:]},
		Leaf:         &waCert.CertChain_NoiseCertificate{Details: leafDetails, Signature: leafSig[:]},
	})
}
