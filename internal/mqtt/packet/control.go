package packet

// Pingreq is PINGREQ.
type Pingreq struct{}

// Pingresp is PINGRESP.
type Pingresp struct{}

func (*Pingreq) Type() Type  { return TypePingreq }
func (*Pingresp) Type() Type { return TypePingresp }

func (*Pingreq) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(TypePingreq)<<4, 0), nil
}

func (*Pingresp) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(TypePingresp)<<4, 0), nil
}

// Disconnect is DISCONNECT. Under 3.1.1 it is empty and only a client sends
// it; the engine must not write one to a 3.1.1 client.
type Disconnect struct {
	ReasonCode ReasonCode // MQTT 5
	Properties Properties // MQTT 5
}

func (*Disconnect) Type() Type { return TypeDisconnect }

func decodeDisconnect(c *cursor, v Version) (*Disconnect, error) {
	p := &Disconnect{}
	if v != V5 {
		return p, nil // trailing bytes are refused by decodeBody
	}
	var err error
	if p.ReasonCode, err = decodeReasonAndProps(c, inDisconnect, &p.Properties); err != nil {
		return nil, err
	}
	return p, checkReason(TypeDisconnect, v, p.ReasonCode)
}

// decodeReasonAndProps reads the optional reason code and properties of
// DISCONNECT and AUTH: a remaining length of 0 means Success, of 1 no
// properties (MQTT 5.0 3.14.2.1, 3.15.2.1).
func decodeReasonAndProps(c *cursor, ctx propCtx, p *Properties) (ReasonCode, error) {
	if c.left() == 0 {
		return Success, nil
	}
	code, _ := c.byte("reason code")
	if c.left() == 0 {
		return ReasonCode(code), nil
	}
	return ReasonCode(code), decodeProperties(c, ctx, p)
}

func (p *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return append(dst, byte(TypeDisconnect)<<4, 0), nil
	}
	return appendReasonAndProps(dst, byte(TypeDisconnect)<<4, inDisconnect, p.ReasonCode, &p.Properties)
}

func appendReasonAndProps(dst []byte, first byte, ctx propCtx, code ReasonCode, props *Properties) ([]byte, error) {
	if err := checkReason(Type(first>>4), V5, code); err != nil {
		return dst, err
	}
	pn, err := props.size(ctx)
	if err != nil {
		return dst, err
	}
	rl := 0
	switch {
	case pn > 0:
		rl = 1 + propsLen(pn)
	case code != Success:
		rl = 1
	}
	if dst, err = appendHeader(dst, first, rl); err != nil {
		return dst, err
	}
	if rl > 0 {
		dst = append(dst, byte(code))
	}
	if pn > 0 {
		dst = props.appendTo(dst, pn)
	}
	return dst, nil
}

// Auth is AUTH (MQTT 5 only): extended authentication exchanges.
type Auth struct {
	ReasonCode ReasonCode // Success, ContinueAuthentication or ReAuthenticate
	Properties Properties
}

func (*Auth) Type() Type { return TypeAuth }

func decodeAuth(c *cursor) (*Auth, error) {
	p := &Auth{}
	code, err := decodeReasonAndProps(c, inAuth, &p.Properties)
	if err != nil {
		return nil, err
	}
	if err := checkReason(TypeAuth, V5, code); err != nil {
		return nil, err
	}
	p.ReasonCode = code
	return p, nil
}

func (p *Auth) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return dst, malformed("AUTH does not exist in MQTT 3.1.1")
	}
	return appendReasonAndProps(dst, byte(TypeAuth)<<4, inAuth, p.ReasonCode, &p.Properties)
}
