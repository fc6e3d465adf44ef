package packet

import "fmt"

// Connect is CONNECT (MQTT 5.0 3.1, 3.1.1 3.1).
type Connect struct {
	Version    Version // protocol level: V311 or V5
	CleanStart bool    // Clean Session in 3.1.1
	KeepAlive  uint16
	Properties Properties // MQTT 5
	ClientID   string
	Will       *Will // nil: no will
	// The flags say whether a user name and password were sent: an empty
	// one is not an absent one.
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
}

// Will is the will message of a CONNECT.
type Will struct {
	QoS        byte
	Retain     bool
	Properties Properties // MQTT 5 will properties
	Topic      string
	Payload    []byte
}

func (*Connect) Type() Type { return TypeConnect }

const (
	flagReserved     = 0x01
	flagCleanStart   = 0x02
	flagWill         = 0x04
	flagWillQoSShift = 3
	flagWillRetain   = 0x20
	flagPassword     = 0x40
	flagUsername     = 0x80
)

func decodeConnect(c *cursor) (*Connect, error) {
	// The protocol name and level come first so that an unknown protocol
	// is answered as such (CONNACK 0x84, 3.1.1 return code 1) whatever
	// follows it.
	name, err := c.string("protocol name")
	if err != nil {
		return nil, err
	}
	level, err := c.byte("protocol level")
	if err != nil {
		return nil, err
	}
	if name != "MQTT" || (Version(level) != V311 && Version(level) != V5) {
		return nil, &Error{Code: UnsupportedProtocolVersion, Msg: fmt.Sprintf("protocol %q level %d", name, level)}
	}
	p := &Connect{Version: Version(level)}
	flags, err := c.byte("connect flags")
	if err != nil {
		return nil, err
	}
	if flags&flagReserved != 0 {
		return nil, malformed("reserved connect flag set")
	}
	p.CleanStart = flags&flagCleanStart != 0
	p.UsernameFlag = flags&flagUsername != 0
	p.PasswordFlag = flags&flagPassword != 0
	willQoS := flags >> flagWillQoSShift & 3
	if flags&flagWill == 0 {
		if willQoS != 0 || flags&flagWillRetain != 0 {
			return nil, malformed("will QoS or retain set without a will")
		}
	} else if willQoS == 3 {
		return nil, malformed("will QoS 3")
	}
	if p.Version == V311 && p.PasswordFlag && !p.UsernameFlag {
		return nil, malformed("password without a user name")
	}
	if p.KeepAlive, err = c.uint16("keep alive"); err != nil {
		return nil, err
	}
	if p.Version == V5 {
		if err := decodeProperties(c, inConnect, &p.Properties); err != nil {
			return nil, err
		}
		if p.Properties.AuthData != nil && p.Properties.AuthMethod == "" {
			return nil, protocolErr("authentication data without a method")
		}
	}
	if p.ClientID, err = c.string("client identifier"); err != nil {
		return nil, err
	}
	if flags&flagWill != 0 {
		w := &Will{QoS: willQoS, Retain: flags&flagWillRetain != 0}
		if p.Version == V5 {
			if err := decodeProperties(c, inWill, &w.Properties); err != nil {
				return nil, fmt.Errorf("will: %w", err)
			}
		}
		if w.Topic, err = c.string("will topic"); err != nil {
			return nil, err
		}
		if err := ValidTopicName(w.Topic); err != nil {
			return nil, &Error{Code: TopicNameInvalid, Msg: "will topic", Err: err}
		}
		if w.Payload, err = c.binary("will payload"); err != nil {
			return nil, err
		}
		p.Will = w
	}
	if p.UsernameFlag {
		if p.Username, err = c.string("user name"); err != nil {
			return nil, err
		}
	}
	if p.PasswordFlag {
		if p.Password, err = c.binary("password"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Append encodes the CONNECT at p.Version; v is ignored.
func (p *Connect) Append(dst []byte, _ Version) ([]byte, error) {
	if p.Version != V311 && p.Version != V5 {
		return dst, &Error{Code: UnsupportedProtocolVersion, Msg: fmt.Sprintf("protocol level %d", p.Version)}
	}
	if p.Version == V311 && p.PasswordFlag && !p.UsernameFlag {
		return dst, malformed("password without a user name")
	}
	flags := byte(0)
	if p.CleanStart {
		flags |= flagCleanStart
	}
	if p.UsernameFlag {
		flags |= flagUsername
	}
	if p.PasswordFlag {
		flags |= flagPassword
	}
	s := sizer{n: 6 + 1 + 1 + 2}
	var pn, wn int
	var err error
	if p.Version == V5 {
		if pn, err = p.Properties.size(inConnect); err != nil {
			return dst, err
		}
		s.n += propsLen(pn)
	}
	s.str("client identifier", p.ClientID)
	if w := p.Will; w != nil {
		if w.QoS > 2 {
			return dst, malformed("will QoS %d", w.QoS)
		}
		flags |= flagWill | w.QoS<<flagWillQoSShift
		if w.Retain {
			flags |= flagWillRetain
		}
		if p.Version == V5 {
			if wn, err = w.Properties.size(inWill); err != nil {
				return dst, err
			}
			s.n += propsLen(wn)
		}
		s.str("will topic", w.Topic)
		s.bin("will payload", w.Payload)
	}
	if p.UsernameFlag {
		s.str("user name", p.Username)
	}
	if p.PasswordFlag {
		s.bin("password", p.Password)
	}
	if s.err != nil {
		return dst, s.err
	}
	if dst, err = appendHeader(dst, byte(TypeConnect)<<4, s.n); err != nil {
		return dst, err
	}
	dst = appendString(dst, "MQTT")
	dst = append(dst, byte(p.Version), flags)
	dst = appendUint16(dst, p.KeepAlive)
	if p.Version == V5 {
		dst = p.Properties.appendTo(dst, pn)
	}
	dst = appendString(dst, p.ClientID)
	if w := p.Will; w != nil {
		if p.Version == V5 {
			dst = w.Properties.appendTo(dst, wn)
		}
		dst = appendString(dst, w.Topic)
		dst = appendBinary(dst, w.Payload)
	}
	if p.UsernameFlag {
		dst = appendString(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBinary(dst, p.Password)
	}
	return dst, nil
}

// Connack is CONNACK (MQTT 5.0 3.2, 3.1.1 3.2). Under 3.1.1 ReasonCode is
// the return code (see V311ConnackCode).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties // MQTT 5
}

func (*Connack) Type() Type { return TypeConnack }

func decodeConnack(c *cursor, v Version) (*Connack, error) {
	flags, err := c.byte("acknowledge flags")
	if err != nil {
		return nil, err
	}
	if flags&^1 != 0 {
		return nil, malformed("reserved acknowledge flags set")
	}
	code, err := c.byte("reason code")
	if err != nil {
		return nil, err
	}
	p := &Connack{SessionPresent: flags == 1, ReasonCode: ReasonCode(code)}
	if err := checkReason(TypeConnack, v, p.ReasonCode); err != nil {
		return nil, err
	}
	if v == V5 {
		if err := decodeProperties(c, inConnack, &p.Properties); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Connack) Append(dst []byte, v Version) ([]byte, error) {
	rl, pn := 2, 0
	if err := checkReason(TypeConnack, v, p.ReasonCode); err != nil {
		return dst, err // under 3.1.1, see V311ConnackCode
	}
	if v == V5 {
		var err error
		if pn, err = p.Properties.size(inConnack); err != nil {
			return dst, err
		}
		rl += propsLen(pn)
	}
	flags := byte(0)
	if p.SessionPresent {
		flags = 1
	}
	dst, err := appendHeader(dst, byte(TypeConnack)<<4, rl)
	if err != nil {
		return dst, err
	}
	dst = append(dst, flags, byte(p.ReasonCode))
	if v == V5 {
		dst = p.Properties.appendTo(dst, pn)
	}
	return dst, nil
}
