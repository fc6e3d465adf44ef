// Package transit seals device secrets for the instance they move to, so
// that a DeviceSecret is never in clear between corral instances nor in a
// log. The destination holds an X25519 key and publishes its public half;
// the source seals each secret with a fresh ephemeral key: X25519, then
// HKDF-SHA256 (salt: both public keys), then AES-256-GCM, the additional
// data binding the destination instance and the device (ProductKey,
// DeviceName) so that a sealed secret cannot be replayed for another
// device or instance. Standard library only.
package transit

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ErrInvalid is wrapped by every refusal of a key or sealed value; the
// message never includes the secret or the sealed bytes.
var ErrInvalid = errors.New("invalid transit value")

const (
	version = 1
	// KeySize is the size of a public or private key.
	KeySize = 32
	// overhead is what Seal adds to the plaintext: version, ephemeral
	// public key, GCM tag.
	overhead = 1 + KeySize + 16
	// MaxPlaintext bounds what is sealed (device secrets are 32-64
	// characters).
	MaxPlaintext = 256
	info         = "corral distribution transit v1"
)

// Key is an instance's transit key pair. Its zero value is not usable.
type Key struct{ priv *ecdh.PrivateKey }

// NewKey makes a key pair from rand (crypto/rand.Reader in production).
func NewKey(rand io.Reader) (Key, error) {
	k, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return Key{}, fmt.Errorf("transit key: %w", err)
	}
	return Key{priv: k}, nil
}

// ParseKey reads a private key stored with Bytes.
func ParseKey(b []byte) (Key, error) {
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return Key{}, fmt.Errorf("transit private key: %w: %d bytes, want %d", ErrInvalid, len(b), KeySize)
	}
	return Key{priv: k}, nil
}

// Bytes is the private key, to be stored sealed at rest.
func (k Key) Bytes() []byte { return k.priv.Bytes() }

// Public is the public key the destination publishes.
func (k Key) Public() []byte { return k.priv.PublicKey().Bytes() }

// AAD binds a sealed secret to the destination instance and the device.
func AAD(instanceID, productKey, deviceName string) []byte {
	return []byte("corral transit\x00" + instanceID + "\x00" + productKey + "\x00" + deviceName)
}

func aead(shared, ephPub, recipPub []byte) (cipher.AEAD, error) {
	salt := append(append([]byte{}, ephPub...), recipPub...)
	key, err := hkdf.Key(sha256.New, shared, salt, info, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal seals plaintext for the holder of the public key recipient, bound
// to aad. Each call uses a fresh ephemeral key, so the GCM key is used
// once and the nonce may be zero.
func Seal(rand io.Reader, recipient, plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("transit: %w: at most %d bytes are sealed", ErrInvalid, MaxPlaintext)
	}
	pub, err := ecdh.X25519().NewPublicKey(recipient)
	if err != nil {
		return nil, fmt.Errorf("transit public key: %w: %d bytes, want %d", ErrInvalid, len(recipient), KeySize)
	}
	eph, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("transit: ephemeral key: %w", err)
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("transit public key: %w: a low-order point", ErrInvalid)
	}
	ephPub := eph.PublicKey().Bytes()
	g, err := aead(shared, ephPub, recipient)
	if err != nil {
		return nil, fmt.Errorf("transit: %w", err)
	}
	out := make([]byte, 0, overhead+len(plaintext))
	out = append(out, version)
	out = append(out, ephPub...)
	return g.Seal(out, make([]byte, g.NonceSize()), plaintext, aad), nil
}

// Open opens a value sealed for k with the same aad.
func (k Key) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < overhead || len(sealed) > overhead+MaxPlaintext {
		return nil, fmt.Errorf("transit: %w: a sealed value is %d-%d bytes", ErrInvalid, overhead, overhead+MaxPlaintext)
	}
	if sealed[0] != version {
		return nil, fmt.Errorf("transit: %w: unknown version %d", ErrInvalid, sealed[0])
	}
	ephPub := sealed[1 : 1+KeySize]
	eph, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, fmt.Errorf("transit: %w: bad ephemeral key", ErrInvalid)
	}
	shared, err := k.priv.ECDH(eph)
	if err != nil {
		return nil, fmt.Errorf("transit: %w: bad ephemeral key", ErrInvalid)
	}
	g, err := aead(shared, ephPub, k.Public())
	if err != nil {
		return nil, fmt.Errorf("transit: %w", err)
	}
	pt, err := g.Open(nil, make([]byte, g.NonceSize()), sealed[1+KeySize:], aad)
	if err != nil {
		return nil, fmt.Errorf("transit: %w: not sealed for this instance and device, or altered", ErrInvalid)
	}
	return pt, nil
}
