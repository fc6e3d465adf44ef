package credential

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Errors of the Alibaba CONNECT formats.
var (
	// ErrMalformed means a clientId or username does not follow the format.
	ErrMalformed = errors.New("malformed")
	// ErrUnsupportedSignMethod means signmethod is not hmacsha256, hmacsha1 or hmacmd5.
	ErrUnsupportedSignMethod = errors.New("unsupported signmethod (use hmacsha256, hmacsha1 or hmacmd5)")
)

// Limits of the CONNECT fields.
const (
	MaxClientIDLen = 256
	maxParams      = 32
)

// ClientID is a parsed Alibaba MQTT clientId "{id}|k=v,k=v,…|".
type ClientID struct {
	ID         string // the signed part before the first '|', e.g. "pk.dn"
	SecureMode string // "2" TLS, "3" TCP, "-2" token
	SignMethod string // hmacsha256 (default), hmacsha1, hmacmd5
	Timestamp  string
	AuthType   string // register, regnwl, connwl, or empty
	Random     string
	Params     map[string]string // every key, known or not
}

// ParseClientID parses an MQTT clientId as the Alibaba Link SDKs send it.
// Unknown keys and an empty trailing item are tolerated; a clientId
// without '|' is a plain id.
func ParseClientID(s string) (ClientID, error) {
	if len(s) > MaxClientIDLen {
		return ClientID{}, fmt.Errorf("clientId is over %d bytes: %w", MaxClientIDLen, ErrMalformed)
	}
	id, rest, has := strings.Cut(s, "|")
	c := ClientID{ID: id, SignMethod: "hmacsha256", Params: map[string]string{}}
	if !has {
		return c, nil
	}
	body, tail, ok := strings.Cut(rest, "|")
	if !ok || tail != "" {
		return ClientID{}, fmt.Errorf("clientId parameters must end with a single '|': %w", ErrMalformed)
	}
	items := strings.Split(body, ",")
	if len(items) > maxParams {
		return ClientID{}, fmt.Errorf("clientId has over %d parameters: %w", maxParams, ErrMalformed)
	}
	for i, item := range items {
		if item == "" {
			if i == len(items)-1 {
				continue // "…,ext=3,|" as the v3 SDK sends
			}
			return ClientID{}, fmt.Errorf("clientId has an empty parameter: %w", ErrMalformed)
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok || k == "" {
			return ClientID{}, fmt.Errorf("clientId parameter %d is not key=value: %w", i+1, ErrMalformed)
		}
		if _, dup := c.Params[k]; dup {
			return ClientID{}, fmt.Errorf("clientId repeats %.32q: %w", k, ErrMalformed) // clipped: errors reach logs
		}
		c.Params[k] = v
	}
	if v, ok := c.Params["signmethod"]; ok {
		c.SignMethod = strings.ToLower(v)
	}
	if _, err := hasher(c.SignMethod); err != nil {
		return ClientID{}, err
	}
	c.SecureMode, c.Timestamp, c.AuthType, c.Random = c.Params["securemode"], c.Params["timestamp"], c.Params["authType"], c.Params["random"]
	return c, nil
}

// ParseUsername splits "{deviceName}&{productKey}".
func ParseUsername(u string) (deviceName, productKey string, err error) {
	dn, pk, ok := strings.Cut(u, "&")
	if !ok || dn == "" || pk == "" || strings.Contains(pk, "&") {
		return "", "", fmt.Errorf("username must be {deviceName}&{productKey}: %w", ErrMalformed)
	}
	return dn, pk, nil
}

// MQTTSignContent is the string a device signs for CONNECT:
// "clientId"+id+"deviceName"+dn+"productKey"+pk+"timestamp"+ts, the
// timestamp part left out when the clientId carries none.
func MQTTSignContent(clientID, deviceName, productKey, timestamp string) string {
	s := "clientId" + clientID + "deviceName" + deviceName + "productKey" + productKey
	if timestamp != "" {
		s += "timestamp" + timestamp
	}
	return s
}

func hasher(method string) (func() hash.Hash, error) {
	switch strings.ToLower(method) {
	case "hmacsha256":
		return sha256.New, nil
	case "hmacsha1":
		return sha1.New, nil
	case "hmacmd5":
		return md5.New, nil
	}
	return nil, ErrUnsupportedSignMethod
}

// Sign returns hex(HMAC(secret, content)) with the named method.
func Sign(method, secret, content string) (string, error) {
	h, err := hasher(method)
	if err != nil {
		return "", err
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(content))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// VerifyPassword reports whether password is the signature of content;
// hex is compared case-insensitively and in constant time.
func VerifyPassword(method, secret, content, password string) bool {
	want, err := Sign(method, secret, content)
	if err != nil || len(password) != len(want) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(password))) == 1
}
