package packet

import (
	"fmt"
	"math/bits"
)

// Properties are the MQTT 5 properties of a packet (MQTT 5.0 2.2.2.2). A
// property is absent when its field is the zero value, except where zero is
// a value with its own meaning: those fields are pointers (nil: absent).
// Absent strings and zero-length ones are the same to the codec: it encodes
// a string property only when non-empty, binary ones whenever non-nil.
type Properties struct {
	PayloadFormat       byte     // 0x01: 0 bytes (the default), 1 UTF-8
	MessageExpiry       *uint32  // 0x02: seconds; nil never expires
	ContentType         string   // 0x03
	ResponseTopic       string   // 0x08
	CorrelationData     []byte   // 0x09: nil absent
	SubscriptionIDs     []uint32 // 0x0B: one in SUBSCRIBE, any number in PUBLISH
	SessionExpiry       *uint32  // 0x11: nil absent (in DISCONNECT: CONNECT's value stands)
	AssignedClientID    string   // 0x12
	ServerKeepAlive     *uint16  // 0x13
	AuthMethod          string   // 0x15
	AuthData            []byte   // 0x16: nil absent
	RequestProblemInfo  *bool    // 0x17: nil means true
	WillDelay           uint32   // 0x18
	RequestResponseInfo bool     // 0x19
	ResponseInfo        string   // 0x1A
	ServerReference     string   // 0x1C
	ReasonString        string   // 0x1F
	ReceiveMaximum      uint16   // 0x21: 0 absent (65,535); 0 on the wire is a protocol error
	TopicAliasMaximum   uint16   // 0x22
	TopicAlias          uint16   // 0x23: 0 absent; 0 on the wire is a protocol error
	MaximumQoS          *byte    // 0x24: nil means 2
	RetainAvailable     *bool    // 0x25: nil means true
	User                []UserProperty
	MaximumPacketSize   uint32 // 0x27: 0 absent (no limit); 0 on the wire is a protocol error
	WildcardSubAvail    *bool  // 0x28: nil means true
	SubIDAvail          *bool  // 0x29: nil means true
	SharedSubAvail      *bool  // 0x2A: nil means true
}

// UserProperty is one User Property (0x26): order is kept and a name may
// repeat.
type UserProperty struct {
	Key, Value string
}

// Property identifiers (MQTT 5.0 table 2-4).
const (
	propPayloadFormat       = 0x01
	propMessageExpiry       = 0x02
	propContentType         = 0x03
	propResponseTopic       = 0x08
	propCorrelationData     = 0x09
	propSubscriptionID      = 0x0B
	propSessionExpiry       = 0x11
	propAssignedClientID    = 0x12
	propServerKeepAlive     = 0x13
	propAuthMethod          = 0x15
	propAuthData            = 0x16
	propRequestProblemInfo  = 0x17
	propWillDelay           = 0x18
	propRequestResponseInfo = 0x19
	propResponseInfo        = 0x1A
	propServerReference     = 0x1C
	propReasonString        = 0x1F
	propReceiveMaximum      = 0x21
	propTopicAliasMaximum   = 0x22
	propTopicAlias          = 0x23
	propMaximumQoS          = 0x24
	propRetainAvailable     = 0x25
	propUser                = 0x26
	propMaximumPacketSize   = 0x27
	propWildcardSubAvail    = 0x28
	propSubIDAvail          = 0x29
	propSharedSubAvail      = 0x2A
)

// propCtx is where a property list sits: a packet type, or a will.
type propCtx uint16

const (
	inConnect propCtx = 1 << iota
	inConnack
	inPublish
	inWill
	inPubResp // PUBACK, PUBREC, PUBREL, PUBCOMP
	inSubscribe
	inSuback
	inUnsubscribe
	inUnsuback
	inDisconnect
	inAuth
)

func (c propCtx) String() string {
	switch c {
	case inConnect:
		return "CONNECT"
	case inConnack:
		return "CONNACK"
	case inPublish:
		return "PUBLISH"
	case inWill:
		return "will properties"
	case inPubResp:
		return "PUBACK/PUBREC/PUBREL/PUBCOMP"
	case inSubscribe:
		return "SUBSCRIBE"
	case inSuback:
		return "SUBACK"
	case inUnsubscribe:
		return "UNSUBSCRIBE"
	case inUnsuback:
		return "UNSUBACK"
	case inDisconnect:
		return "DISCONNECT"
	case inAuth:
		return "AUTH"
	}
	return "?"
}

// allowedIn is MQTT 5.0 table 2-4: where each property may appear. Anything
// else is malformed ("an Identifier which is not valid for its packet type",
// 2.2.2.2).
func allowedIn(id int) propCtx {
	switch id {
	case propPayloadFormat, propMessageExpiry, propContentType, propResponseTopic, propCorrelationData:
		return inPublish | inWill
	case propSubscriptionID:
		return inPublish | inSubscribe
	case propSessionExpiry:
		return inConnect | inConnack | inDisconnect
	case propAssignedClientID, propServerKeepAlive, propResponseInfo, propMaximumQoS, propRetainAvailable,
		propWildcardSubAvail, propSubIDAvail, propSharedSubAvail:
		return inConnack
	case propAuthMethod, propAuthData:
		return inConnect | inConnack | inAuth
	case propRequestProblemInfo, propRequestResponseInfo:
		return inConnect
	case propWillDelay:
		return inWill
	case propServerReference:
		return inConnack | inDisconnect
	case propReasonString:
		return inConnack | inPubResp | inSuback | inUnsuback | inDisconnect | inAuth
	case propReceiveMaximum, propTopicAliasMaximum, propMaximumPacketSize:
		return inConnect | inConnack
	case propTopicAlias:
		return inPublish
	case propUser:
		return inConnect | inConnack | inPublish | inWill | inPubResp | inSubscribe | inSuback |
			inUnsubscribe | inUnsuback | inDisconnect | inAuth
	}
	return 0
}

// decodeProperties reads a property length and the properties into p.
func decodeProperties(c *cursor, ctx propCtx, p *Properties) error {
	n, err := c.varint("property length")
	if err != nil {
		return err
	}
	if n > c.left() {
		return malformed("property length %d over the %d bytes left", n, c.left())
	}
	pc := &cursor{b: c.b[c.i : c.i+n : c.i+n]}
	c.i += n
	var seen uint64
	for pc.left() > 0 {
		id, err := pc.varint("property identifier")
		if err != nil {
			return err
		}
		if allowedIn(id)&ctx == 0 {
			return malformed("property 0x%02X not allowed in %s", id, ctx)
		}
		// Only User Property, and Subscription Identifier in PUBLISH (one per
		// matching subscription), may repeat; 2.2.2.2 makes a repeat of any
		// other a protocol error.
		if id != propUser && (id != propSubscriptionID || ctx != inPublish) {
			if seen&(1<<id) != 0 {
				return protocolErr("property 0x%02X repeated in %s", id, ctx)
			}
			seen |= 1 << id
		}
		if err := p.decodeOne(pc, id); err != nil {
			return fmt.Errorf("property 0x%02X: %w", id, err)
		}
	}
	return nil
}

func (p *Properties) decodeOne(c *cursor, id int) error {
	var err error
	switch id {
	case propPayloadFormat:
		p.PayloadFormat, err = byteFlag(c)
	case propMessageExpiry:
		p.MessageExpiry, err = u32Ptr(c)
	case propContentType:
		p.ContentType, err = c.string("content type")
	case propResponseTopic:
		p.ResponseTopic, err = c.string("response topic")
		if err == nil {
			if terr := ValidTopicName(p.ResponseTopic); terr != nil {
				return &Error{Code: ProtocolError, Msg: "invalid response topic", Err: terr}
			}
		}
	case propCorrelationData:
		p.CorrelationData, err = c.binary("correlation data")
	case propSubscriptionID:
		var v int
		v, err = c.varint("subscription identifier")
		if err == nil && v == 0 {
			return protocolErr("subscription identifier 0")
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
	case propSessionExpiry:
		p.SessionExpiry, err = u32Ptr(c)
	case propAssignedClientID:
		p.AssignedClientID, err = c.string("assigned client identifier")
	case propServerKeepAlive:
		var v uint16
		v, err = c.uint16("server keep alive")
		p.ServerKeepAlive = &v
	case propAuthMethod:
		p.AuthMethod, err = c.string("authentication method")
	case propAuthData:
		p.AuthData, err = c.binary("authentication data")
	case propRequestProblemInfo:
		p.RequestProblemInfo, err = boolPtr(c)
	case propWillDelay:
		p.WillDelay, err = c.uint32("will delay interval")
	case propRequestResponseInfo:
		var b byte
		b, err = byteFlag(c)
		p.RequestResponseInfo = b == 1
	case propResponseInfo:
		p.ResponseInfo, err = c.string("response information")
	case propServerReference:
		p.ServerReference, err = c.string("server reference")
	case propReasonString:
		p.ReasonString, err = c.string("reason string")
	case propReceiveMaximum:
		p.ReceiveMaximum, err = nonZero16(c, "receive maximum")
	case propTopicAliasMaximum:
		p.TopicAliasMaximum, err = c.uint16("topic alias maximum")
	case propTopicAlias:
		p.TopicAlias, err = nonZero16(c, "topic alias")
	case propMaximumQoS:
		var b byte
		b, err = byteFlag(c)
		p.MaximumQoS = &b
	case propRetainAvailable:
		p.RetainAvailable, err = boolPtr(c)
	case propUser:
		var u UserProperty
		if u.Key, err = c.string("user property name"); err != nil {
			return err
		}
		if u.Value, err = c.string("user property value"); err != nil {
			return err
		}
		p.User = append(p.User, u)
	case propMaximumPacketSize:
		p.MaximumPacketSize, err = c.uint32("maximum packet size")
		if err == nil && p.MaximumPacketSize == 0 {
			return protocolErr("maximum packet size 0")
		}
	case propWildcardSubAvail:
		p.WildcardSubAvail, err = boolPtr(c)
	case propSubIDAvail:
		p.SubIDAvail, err = boolPtr(c)
	case propSharedSubAvail:
		p.SharedSubAvail, err = boolPtr(c)
	}
	return err
}

// byteFlag reads a property whose only values are 0 and 1; any other is a
// protocol error (MQTT 5.0 3.1.2.11, 3.2.2.3).
func byteFlag(c *cursor) (byte, error) {
	b, err := c.byte("property value")
	if err == nil && b > 1 {
		return 0, protocolErr("value %d, must be 0 or 1", b)
	}
	return b, err
}

func boolPtr(c *cursor) (*bool, error) {
	b, err := byteFlag(c)
	v := b == 1
	return &v, err
}

func u32Ptr(c *cursor) (*uint32, error) {
	v, err := c.uint32("property value")
	return &v, err
}

func nonZero16(c *cursor, what string) (uint16, error) {
	v, err := c.uint16(what)
	if err == nil && v == 0 {
		return 0, protocolErr("%s 0", what)
	}
	return v, err
}

// present is the set of properties p carries, one bit per identifier.
func (p *Properties) present() uint64 {
	var m uint64
	set := func(id int, ok bool) {
		if ok {
			m |= 1 << id
		}
	}
	set(propPayloadFormat, p.PayloadFormat != 0)
	set(propMessageExpiry, p.MessageExpiry != nil)
	set(propContentType, p.ContentType != "")
	set(propResponseTopic, p.ResponseTopic != "")
	set(propCorrelationData, p.CorrelationData != nil)
	set(propSubscriptionID, len(p.SubscriptionIDs) > 0)
	set(propSessionExpiry, p.SessionExpiry != nil)
	set(propAssignedClientID, p.AssignedClientID != "")
	set(propServerKeepAlive, p.ServerKeepAlive != nil)
	set(propAuthMethod, p.AuthMethod != "")
	set(propAuthData, p.AuthData != nil)
	set(propRequestProblemInfo, p.RequestProblemInfo != nil)
	set(propWillDelay, p.WillDelay != 0)
	set(propRequestResponseInfo, p.RequestResponseInfo)
	set(propResponseInfo, p.ResponseInfo != "")
	set(propServerReference, p.ServerReference != "")
	set(propReasonString, p.ReasonString != "")
	set(propReceiveMaximum, p.ReceiveMaximum != 0)
	set(propTopicAliasMaximum, p.TopicAliasMaximum != 0)
	set(propTopicAlias, p.TopicAlias != 0)
	set(propMaximumQoS, p.MaximumQoS != nil)
	set(propRetainAvailable, p.RetainAvailable != nil)
	set(propUser, len(p.User) > 0)
	set(propMaximumPacketSize, p.MaximumPacketSize != 0)
	set(propWildcardSubAvail, p.WildcardSubAvail != nil)
	set(propSubIDAvail, p.SubIDAvail != nil)
	set(propSharedSubAvail, p.SharedSubAvail != nil)
	return m
}

// size is the encoded length of p's properties without the property length,
// or an error if p carries a property ctx does not allow: the encoder never
// writes a packet the decoder would refuse for it.
func (p *Properties) size(ctx propCtx) (int, error) {
	m := p.present()
	for mm := m; mm != 0; mm &= mm - 1 {
		if id := bits.TrailingZeros64(mm); allowedIn(id)&ctx == 0 {
			return 0, malformed("property 0x%02X not allowed in %s", id, ctx)
		}
	}
	if ctx == inSubscribe && len(p.SubscriptionIDs) > 1 {
		return 0, protocolErr("SUBSCRIBE carries at most one subscription identifier")
	}
	var s sizer
	for _, id := range p.SubscriptionIDs {
		if id == 0 || id > MaxRemainingLength {
			return 0, protocolErr("subscription identifier %d out of range", id)
		}
		s.n += 1 + varintLen(int(id))
	}
	for _, u := range p.User {
		s.n++
		s.str("user property name", u.Key)
		s.str("user property value", u.Value)
	}
	m &^= 1<<propSubscriptionID | 1<<propUser
	for mm := m; mm != 0; mm &= mm - 1 {
		s.n++ // the identifier: all fit one byte
		switch id := bits.TrailingZeros64(mm); id {
		case propPayloadFormat, propRequestProblemInfo, propRequestResponseInfo, propMaximumQoS,
			propRetainAvailable, propWildcardSubAvail, propSubIDAvail, propSharedSubAvail:
			s.n++
		case propServerKeepAlive, propReceiveMaximum, propTopicAliasMaximum, propTopicAlias:
			s.n += 2
		case propMessageExpiry, propSessionExpiry, propWillDelay, propMaximumPacketSize:
			s.n += 4
		case propContentType:
			s.str("content type", p.ContentType)
		case propResponseTopic:
			s.str("response topic", p.ResponseTopic)
		case propCorrelationData:
			s.bin("correlation data", p.CorrelationData)
		case propAssignedClientID:
			s.str("assigned client identifier", p.AssignedClientID)
		case propAuthMethod:
			s.str("authentication method", p.AuthMethod)
		case propAuthData:
			s.bin("authentication data", p.AuthData)
		case propResponseInfo:
			s.str("response information", p.ResponseInfo)
		case propServerReference:
			s.str("server reference", p.ServerReference)
		case propReasonString:
			s.str("reason string", p.ReasonString)
		}
	}
	return s.n, s.err
}

// appendTo appends the property length n (from size) and the
// properties, in identifier order.
func (p *Properties) appendTo(dst []byte, n int) []byte {
	dst = appendVarint(dst, n)
	if n == 0 {
		return dst
	}
	b01 := func(v bool) byte {
		if v {
			return 1
		}
		return 0
	}
	if p.PayloadFormat != 0 {
		dst = append(dst, propPayloadFormat, p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		dst = appendUint32(append(dst, propMessageExpiry), *p.MessageExpiry)
	}
	if p.ContentType != "" {
		dst = appendString(append(dst, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" {
		dst = appendString(append(dst, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		dst = appendBinary(append(dst, propCorrelationData), p.CorrelationData)
	}
	for _, id := range p.SubscriptionIDs {
		dst = appendVarint(append(dst, propSubscriptionID), int(id))
	}
	if p.SessionExpiry != nil {
		dst = appendUint32(append(dst, propSessionExpiry), *p.SessionExpiry)
	}
	if p.AssignedClientID != "" {
		dst = appendString(append(dst, propAssignedClientID), p.AssignedClientID)
	}
	if p.ServerKeepAlive != nil {
		dst = appendUint16(append(dst, propServerKeepAlive), *p.ServerKeepAlive)
	}
	if p.AuthMethod != "" {
		dst = appendString(append(dst, propAuthMethod), p.AuthMethod)
	}
	if p.AuthData != nil {
		dst = appendBinary(append(dst, propAuthData), p.AuthData)
	}
	if p.RequestProblemInfo != nil {
		dst = append(dst, propRequestProblemInfo, b01(*p.RequestProblemInfo))
	}
	if p.WillDelay != 0 {
		dst = appendUint32(append(dst, propWillDelay), p.WillDelay)
	}
	if p.RequestResponseInfo {
		dst = append(dst, propRequestResponseInfo, 1)
	}
	if p.ResponseInfo != "" {
		dst = appendString(append(dst, propResponseInfo), p.ResponseInfo)
	}
	if p.ServerReference != "" {
		dst = appendString(append(dst, propServerReference), p.ServerReference)
	}
	if p.ReasonString != "" {
		dst = appendString(append(dst, propReasonString), p.ReasonString)
	}
	if p.ReceiveMaximum != 0 {
		dst = appendUint16(append(dst, propReceiveMaximum), p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum != 0 {
		dst = appendUint16(append(dst, propTopicAliasMaximum), p.TopicAliasMaximum)
	}
	if p.TopicAlias != 0 {
		dst = appendUint16(append(dst, propTopicAlias), p.TopicAlias)
	}
	if p.MaximumQoS != nil {
		dst = append(dst, propMaximumQoS, *p.MaximumQoS)
	}
	if p.RetainAvailable != nil {
		dst = append(dst, propRetainAvailable, b01(*p.RetainAvailable))
	}
	for _, u := range p.User {
		dst = appendString(appendString(append(dst, propUser), u.Key), u.Value)
	}
	if p.MaximumPacketSize != 0 {
		dst = appendUint32(append(dst, propMaximumPacketSize), p.MaximumPacketSize)
	}
	if p.WildcardSubAvail != nil {
		dst = append(dst, propWildcardSubAvail, b01(*p.WildcardSubAvail))
	}
	if p.SubIDAvail != nil {
		dst = append(dst, propSubIDAvail, b01(*p.SubIDAvail))
	}
	if p.SharedSubAvail != nil {
		dst = append(dst, propSharedSubAvail, b01(*p.SharedSubAvail))
	}
	return dst
}

// propsLen is the bytes properties take with their length prefix.
func propsLen(n int) int { return varintLen(n) + n }
