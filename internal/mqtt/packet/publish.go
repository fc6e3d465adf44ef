package packet

// Publish is PUBLISH (MQTT 5.0 3.3, 3.1.1 3.3).
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string // empty under MQTT 5 when Properties.TopicAlias names it
	PacketID   uint16 // QoS 1 and 2 only
	Properties Properties
	Payload    []byte // aliases the decoded bytes
}

func (*Publish) Type() Type { return TypePublish }

func decodePublish(flags byte, c *cursor, v Version) (*Publish, error) {
	p := new(Publish)
	if err := p.decode(flags, c, v); err != nil {
		return nil, err
	}
	return p, nil
}

// decode sets p, whatever it held, to the PUBLISH of flags and c.
func (p *Publish) decode(flags byte, c *cursor, v Version) error {
	*p = Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 3, Retain: flags&0x01 != 0}
	if p.Dup && p.QoS == 0 {
		return protocolErr("DUP set on a QoS 0 PUBLISH") // [MQTT-3.3.1-2]
	}
	var err error
	if p.Topic, err = c.string("topic name"); err != nil {
		return err
	}
	if p.QoS > 0 {
		if p.PacketID, err = packetID(c); err != nil {
			return err
		}
	}
	if v == V5 {
		if err := decodeProperties(c, inPublish, &p.Properties); err != nil {
			return err
		}
	}
	// An empty topic is allowed only when a topic alias stands for it
	// (MQTT 5.0 3.3.2.1); whether the alias is known is the engine's check.
	switch {
	case p.Topic == "" && v == V5 && p.Properties.TopicAlias == 0:
		return protocolErr("empty topic name without a topic alias")
	case p.Topic != "" || v != V5:
		if err := ValidTopicName(p.Topic); err != nil {
			return err
		}
	}
	p.Payload = c.b[c.i:len(c.b):len(c.b)]
	c.i = len(c.b)
	return nil
}

// packetID reads a Packet Identifier, which must not be 0 ([MQTT-2.2.1-3]).
func packetID(c *cursor) (uint16, error) {
	id, err := c.uint16("packet identifier")
	if err == nil && id == 0 {
		return 0, protocolErr("packet identifier 0")
	}
	return id, err
}

func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	if p.QoS > 2 {
		return dst, malformed("QoS %d", p.QoS)
	}
	if p.QoS == 0 && p.Dup {
		return dst, protocolErr("DUP set on a QoS 0 PUBLISH")
	}
	s := sizer{n: len(p.Payload)}
	s.str("topic name", p.Topic)
	if p.QoS > 0 {
		if p.PacketID == 0 {
			return dst, protocolErr("packet identifier 0")
		}
		s.n += 2
	}
	pn := 0
	if v == V5 {
		var err error
		if pn, err = p.Properties.size(inPublish); err != nil {
			return dst, err
		}
		s.n += propsLen(pn)
	} else if p.Topic == "" {
		return dst, topicNameErr("empty topic name")
	}
	if s.err != nil {
		return dst, s.err
	}
	first := byte(TypePublish)<<4 | p.QoS<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	dst, err := appendHeader(dst, first, s.n)
	if err != nil {
		return dst, err
	}
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.appendTo(dst, pn)
	}
	return append(dst, p.Payload...), nil
}

// Ack is the body shared by PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0
// 3.4–3.7): a packet identifier, and under MQTT 5 a reason code and
// properties, both left out on the wire when they are Success and empty.
type Ack struct {
	PacketID   uint16
	ReasonCode ReasonCode // MQTT 5
	Properties Properties // MQTT 5
}

// Puback answers a QoS 1 PUBLISH.
type Puback struct{ Ack }

// Pubrec answers a QoS 2 PUBLISH.
type Pubrec struct{ Ack }

// Pubrel answers a PUBREC.
type Pubrel struct{ Ack }

// Pubcomp answers a PUBREL.
type Pubcomp struct{ Ack }

func (*Puback) Type() Type  { return TypePuback }
func (*Pubrec) Type() Type  { return TypePubrec }
func (*Pubrel) Type() Type  { return TypePubrel }
func (*Pubcomp) Type() Type { return TypePubcomp }

func (p *Puback) Append(dst []byte, v Version) ([]byte, error) {
	return p.appendAck(dst, v, byte(TypePuback)<<4)
}
func (p *Pubrec) Append(dst []byte, v Version) ([]byte, error) {
	return p.appendAck(dst, v, byte(TypePubrec)<<4)
}
func (p *Pubrel) Append(dst []byte, v Version) ([]byte, error) {
	return p.appendAck(dst, v, byte(TypePubrel)<<4|0x02)
}
func (p *Pubcomp) Append(dst []byte, v Version) ([]byte, error) {
	return p.appendAck(dst, v, byte(TypePubcomp)<<4)
}

func (a *Ack) decode(c *cursor, v Version, t Type) error {
	var err error
	if a.PacketID, err = packetID(c); err != nil {
		return err
	}
	// MQTT 5.0 3.4.2.1: a remaining length of 2 means Success and no
	// properties; 3 means a reason code and no properties.
	if v != V5 || c.left() == 0 {
		return nil
	}
	code, _ := c.byte("reason code")
	a.ReasonCode = ReasonCode(code)
	if err := checkReason(t, v, a.ReasonCode); err != nil {
		return err
	}
	if c.left() == 0 {
		return nil
	}
	return decodeProperties(c, inPubResp, &a.Properties)
}

func (a *Ack) appendAck(dst []byte, v Version, first byte) ([]byte, error) {
	if a.PacketID == 0 {
		return dst, protocolErr("packet identifier 0")
	}
	if err := checkReason(Type(first>>4), v, a.ReasonCode); err != nil {
		return dst, err
	}
	rl, pn := 2, 0
	if v == V5 {
		var err error
		if pn, err = a.Properties.size(inPubResp); err != nil {
			return dst, err
		}
		if pn > 0 {
			rl += 1 + propsLen(pn)
		} else if a.ReasonCode != Success {
			rl++
		}
	}
	dst, err := appendHeader(dst, first, rl)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(dst, a.PacketID)
	if rl > 2 {
		dst = append(dst, byte(a.ReasonCode))
	}
	if pn > 0 {
		dst = a.Properties.appendTo(dst, pn)
	}
	return dst, nil
}
