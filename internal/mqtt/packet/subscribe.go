package packet

// Subscribe is SUBSCRIBE (MQTT 5.0 3.8, 3.1.1 3.8).
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // MQTT 5: one subscription identifier, user properties
	Subscriptions []Subscription
}

// Subscription is one topic filter of a SUBSCRIBE with its options. The
// filter is not validated here: a bad filter is answered per subscription
// in SUBACK (0x8F), so the engine checks it with ValidTopicFilter.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // MQTT 5
	RetainAsPublished bool // MQTT 5
	RetainHandling    byte // MQTT 5: 0 send retained, 1 only if new, 2 never
}

func (*Subscribe) Type() Type { return TypeSubscribe }

func decodeSubscribe(c *cursor, v Version) (*Subscribe, error) {
	p := &Subscribe{}
	var err error
	if p.PacketID, err = packetID(c); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := decodeProperties(c, inSubscribe, &p.Properties); err != nil {
			return nil, err
		}
	}
	if c.left() == 0 {
		return nil, protocolErr("SUBSCRIBE without a topic filter") // [MQTT-3.8.3-2]
	}
	for c.left() > 0 {
		var s Subscription
		if s.Filter, err = c.string("topic filter"); err != nil {
			return nil, err
		}
		o, err := c.byte("subscription options")
		if err != nil {
			return nil, err
		}
		reserved := byte(0xC0) // MQTT 5.0 3.8.3.1
		if v != V5 {
			reserved = 0xFC // 3.1.1 3.8.3.1 [MQTT-3-8.3-4]
		}
		if o&reserved != 0 {
			return nil, malformed("reserved subscription option bits set")
		}
		s.QoS = o & 3
		if s.QoS == 3 {
			return nil, malformed("subscription QoS 3")
		}
		s.NoLocal = o&0x04 != 0
		s.RetainAsPublished = o&0x08 != 0
		s.RetainHandling = o >> 4 & 3
		if s.RetainHandling == 3 {
			return nil, protocolErr("retain handling 3")
		}
		if s.NoLocal {
			if _, _, shared := ParseShared(s.Filter); shared {
				return nil, protocolErr("no local on a shared subscription") // [MQTT-3.8.3-4]
			}
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	return p, nil
}

func (p *Subscribe) Append(dst []byte, v Version) ([]byte, error) {
	if p.PacketID == 0 {
		return dst, protocolErr("packet identifier 0")
	}
	if len(p.Subscriptions) == 0 {
		return dst, protocolErr("SUBSCRIBE without a topic filter")
	}
	s := sizer{n: 2}
	pn := 0
	if v == V5 {
		var err error
		if pn, err = p.Properties.size(inSubscribe); err != nil {
			return dst, err
		}
		s.n += propsLen(pn)
	}
	for _, sub := range p.Subscriptions {
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			return dst, malformed("subscription QoS %d, retain handling %d", sub.QoS, sub.RetainHandling)
		}
		s.str("topic filter", sub.Filter)
		s.n++
	}
	if s.err != nil {
		return dst, s.err
	}
	dst, err := appendHeader(dst, byte(TypeSubscribe)<<4|0x02, s.n)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, pn)
	}
	for _, sub := range p.Subscriptions {
		o := sub.QoS
		if v == V5 {
			if sub.NoLocal {
				o |= 0x04
			}
			if sub.RetainAsPublished {
				o |= 0x08
			}
			o |= sub.RetainHandling << 4
		}
		dst = append(appendString(dst, sub.Filter), o)
	}
	return dst, nil
}

// Suback is SUBACK: one reason code (3.1.1: return code 0, 1, 2 or 0x80) per
// subscription, in order.
type Suback struct {
	PacketID    uint16
	Properties  Properties // MQTT 5
	ReasonCodes []ReasonCode
}

func (*Suback) Type() Type { return TypeSuback }

func decodeSuback(c *cursor, v Version) (*Suback, error) {
	p := &Suback{}
	var err error
	if p.PacketID, err = packetID(c); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := decodeProperties(c, inSuback, &p.Properties); err != nil {
			return nil, err
		}
	}
	if p.ReasonCodes, err = reasonList(c, TypeSuback, v); err != nil {
		return nil, err
	}
	return p, nil
}

// reasonList reads the reason codes that fill the rest of a SUBACK or
// UNSUBACK: at least one, as each answers a filter of the request.
func reasonList(c *cursor, t Type, v Version) ([]ReasonCode, error) {
	if c.left() == 0 {
		return nil, protocolErr("no reason code")
	}
	codes := make([]ReasonCode, c.left())
	for i := range codes {
		codes[i] = ReasonCode(c.b[c.i+i])
		if err := checkReason(t, v, codes[i]); err != nil {
			return nil, err
		}
	}
	c.i = len(c.b)
	return codes, nil
}

func (p *Suback) Append(dst []byte, v Version) ([]byte, error) {
	return appendAckList(dst, v, byte(TypeSuback)<<4, inSuback, p.PacketID, &p.Properties, p.ReasonCodes)
}

func appendAckList(dst []byte, v Version, first byte, ctx propCtx, id uint16, props *Properties, codes []ReasonCode) ([]byte, error) {
	if id == 0 {
		return dst, protocolErr("packet identifier 0")
	}
	rl, pn := 2, 0
	if v == V5 {
		var err error
		if pn, err = props.size(ctx); err != nil {
			return dst, err
		}
		rl += propsLen(pn)
	}
	// 3.1.1 UNSUBACK has no payload.
	withCodes := v == V5 || ctx == inSuback
	if withCodes {
		if len(codes) == 0 {
			return dst, protocolErr("no reason code")
		}
		for _, c := range codes {
			if err := checkReason(Type(first>>4), v, c); err != nil {
				return dst, err
			}
		}
		rl += len(codes)
	}
	dst, err := appendHeader(dst, first, rl)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(dst, id)
	if v == V5 {
		dst = props.appendTo(dst, pn)
	}
	if withCodes {
		for _, c := range codes {
			dst = append(dst, byte(c))
		}
	}
	return dst, nil
}

// Unsubscribe is UNSUBSCRIBE (MQTT 5.0 3.10, 3.1.1 3.10).
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties // MQTT 5: user properties
	Filters    []string
}

func (*Unsubscribe) Type() Type { return TypeUnsubscribe }

func decodeUnsubscribe(c *cursor, v Version) (*Unsubscribe, error) {
	p := &Unsubscribe{}
	var err error
	if p.PacketID, err = packetID(c); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := decodeProperties(c, inUnsubscribe, &p.Properties); err != nil {
			return nil, err
		}
	}
	if c.left() == 0 {
		return nil, protocolErr("UNSUBSCRIBE without a topic filter") // [MQTT-3.10.3-2]
	}
	for c.left() > 0 {
		f, err := c.string("topic filter")
		if err != nil {
			return nil, err
		}
		p.Filters = append(p.Filters, f)
	}
	return p, nil
}

func (p *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	if p.PacketID == 0 {
		return dst, protocolErr("packet identifier 0")
	}
	if len(p.Filters) == 0 {
		return dst, protocolErr("UNSUBSCRIBE without a topic filter")
	}
	s := sizer{n: 2}
	pn := 0
	if v == V5 {
		var err error
		if pn, err = p.Properties.size(inUnsubscribe); err != nil {
			return dst, err
		}
		s.n += propsLen(pn)
	}
	for _, f := range p.Filters {
		s.str("topic filter", f)
	}
	if s.err != nil {
		return dst, s.err
	}
	dst, err := appendHeader(dst, byte(TypeUnsubscribe)<<4|0x02, s.n)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, pn)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

// Unsuback is UNSUBACK; under 3.1.1 it has no reason codes.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties   // MQTT 5
	ReasonCodes []ReasonCode // MQTT 5: one per filter
}

func (*Unsuback) Type() Type { return TypeUnsuback }

func decodeUnsuback(c *cursor, v Version) (*Unsuback, error) {
	p := &Unsuback{}
	var err error
	if p.PacketID, err = packetID(c); err != nil {
		return nil, err
	}
	if v != V5 {
		return p, nil
	}
	if err := decodeProperties(c, inUnsuback, &p.Properties); err != nil {
		return nil, err
	}
	if p.ReasonCodes, err = reasonList(c, TypeUnsuback, v); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Unsuback) Append(dst []byte, v Version) ([]byte, error) {
	return appendAckList(dst, v, byte(TypeUnsuback)<<4, inUnsuback, p.PacketID, &p.Properties, p.ReasonCodes)
}
