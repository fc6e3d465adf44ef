package registry

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// base62 is in byte order, so fixed-width base-62 numbers sort as they count.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Limits of names and batches.
const (
	MaxBatch          = 10000
	MaxNameLen        = 64
	MaxDescriptionLen = 1000
	MaxAttributes     = 64
	MaxAttrKeyLen     = 64
	MaxAttrValueLen   = 1024
	ProductKeyLen     = 11
	DeviceSecretLen   = 32
	ProductSecretLen  = 16
)

// ValidateDeviceName checks Alibaba's DeviceName rule: 4 to 32 characters of
// letters, digits and -_@.:
func ValidateDeviceName(name string) error {
	if n := len(name); n < 4 || n > 32 {
		return invalid("deviceName", "must be 4 to 32 characters, got %d", utf8.RuneCountInString(name))
	}
	for i := 0; i < len(name); i++ {
		if !deviceNameByte(name[i]) {
			return invalid("deviceName", "character %q at position %d is not allowed (use letters, digits and -_@.:)", rune(name[i]), i)
		}
	}
	return nil
}

func deviceNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '@' || c == '.' || c == ':'
}

// ValidateProductKey checks the form of a ProductKey: 11 characters of [A-Za-z0-9].
func ValidateProductKey(pk string) error {
	if len(pk) != ProductKeyLen {
		return invalid("productKey", "must be %d characters", ProductKeyLen)
	}
	for i := 0; i < len(pk); i++ {
		c := pk[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return invalid("productKey", "must be letters and digits only")
		}
	}
	return nil
}

// ValidateAttributes checks an attribute map: at most 64 keys of letters,
// digits and _.- up to 64 characters, values up to 1024 bytes of UTF-8.
func ValidateAttributes(field string, attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return invalid(field, "at most %d attributes, got %d", MaxAttributes, len(attrs))
	}
	for k, v := range attrs {
		if err := ValidateAttrKey(field, k); err != nil {
			return err
		}
		if len(v) > MaxAttrValueLen || !utf8.ValidString(v) {
			return invalid(field+"."+k, "value must be valid UTF-8 of at most %d bytes", MaxAttrValueLen)
		}
	}
	return nil
}

// ValidateAttrKey checks one attribute key.
func ValidateAttrKey(field, k string) error {
	if k == "" || len(k) > MaxAttrKeyLen {
		return invalid(field, "attribute keys must be 1 to %d characters", MaxAttrKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return invalid(field, "attribute key %q: use letters, digits and _.-", k)
		}
	}
	return nil
}

func validateText(field, s string, max int, required bool) error {
	if required && s == "" {
		return invalid(field, "is required")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return invalid(field, "must be at most %d characters, got %d", max, n)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// newIotID returns a 20-character iotId: the creation time in
// milliseconds as 8 base-62 digits that sort in time order, then 12 random
// ones. New ids land at the end of the iotId index instead of on a random
// page of it, so a registration burst into a large registry dirties few
// index pages per commit.
func newIotID(r io.Reader, now time.Time) (string, error) {
	var b [8]byte
	ms := uint64(max(now.UnixMilli(), 0))
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = base62[ms%62]
		ms /= 62
	}
	tail, err := randString(r, 12)
	if err != nil {
		return "", err
	}
	return string(b[:]) + tail, nil
}

// randString returns n characters drawn uniformly from base62.
func randString(r io.Reader, n int) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2+8)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("reading randomness: %w", err)
		}
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: reject to stay uniform
				continue
			}
			out = append(out, base62[int(b)%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// MaxThingNameLen is the longest explicit thing name.
const MaxThingNameLen = 128

// DefaultThingName is a device's thing name unless one was set:
// "{ProductKey}.{DeviceName}", unique because the pair is, and never equal
// to an explicit name, which may not hold a '.'.
func DefaultThingName(pk, dn string) string { return pk + "." + dn }

// ValidateThingName checks an explicit thing name: 1 to 128 characters of
// [a-zA-Z0-9:_-] (AWS IoT's rule), so it can never take the form of a
// default name.
func ValidateThingName(name string) error {
	if n := len(name); n < 1 || n > MaxThingNameLen {
		return invalid("thingName", "must be 1 to %d characters, got %d", MaxThingNameLen, utf8.RuneCountInString(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return invalid("thingName", "character %q at position %d is not allowed (use letters, digits and :_-; leave it empty for the default {productKey}.{deviceName})", rune(c), i)
		}
	}
	return nil
}

// ExplicitThingName returns the name a store keeps for a device: "" when
// it uses its default thing name.
func ExplicitThingName(d Device) string {
	if d.ThingName == DefaultThingName(d.ProductKey, d.DeviceName) {
		return ""
	}
	return d.ThingName
}
