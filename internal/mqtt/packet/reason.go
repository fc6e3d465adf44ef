package packet

import (
	"errors"
	"fmt"
	"strings"
)

// ReasonCode is an MQTT 5 reason code (CONNACK, PUBACK…, SUBACK, DISCONNECT,
// AUTH). MQTT 3.1.1 packets carry return codes in the same byte where they
// have one (CONNACK, SUBACK).
type ReasonCode byte

// The reason codes of MQTT 5.0 section 2.4 that the codec or the engine use.
const (
	Success                     ReasonCode = 0x00 // also Normal disconnection, Granted QoS 0
	GrantedQoS1                 ReasonCode = 0x01
	GrantedQoS2                 ReasonCode = 0x02
	DisconnectWithWill          ReasonCode = 0x04
	NoMatchingSubscribers       ReasonCode = 0x10
	NoSubscriptionExisted       ReasonCode = 0x11
	ContinueAuthentication      ReasonCode = 0x18
	ReAuthenticate              ReasonCode = 0x19
	UnspecifiedError            ReasonCode = 0x80
	MalformedPacket             ReasonCode = 0x81
	ProtocolError               ReasonCode = 0x82
	ImplementationSpecific      ReasonCode = 0x83
	UnsupportedProtocolVersion  ReasonCode = 0x84
	ClientIdentifierNotValid    ReasonCode = 0x85
	BadUsernameOrPassword       ReasonCode = 0x86
	NotAuthorized               ReasonCode = 0x87
	ServerUnavailable           ReasonCode = 0x88
	ServerBusy                  ReasonCode = 0x89
	Banned                      ReasonCode = 0x8A
	ServerShuttingDown          ReasonCode = 0x8B
	BadAuthenticationMethod     ReasonCode = 0x8C
	KeepAliveTimeout            ReasonCode = 0x8D
	SessionTakenOver            ReasonCode = 0x8E
	TopicFilterInvalid          ReasonCode = 0x8F
	TopicNameInvalid            ReasonCode = 0x90
	PacketIdentifierInUse       ReasonCode = 0x91
	PacketIdentifierNotFound    ReasonCode = 0x92
	ReceiveMaximumExceeded      ReasonCode = 0x93
	TopicAliasInvalid           ReasonCode = 0x94
	PacketTooLarge              ReasonCode = 0x95
	MessageRateTooHigh          ReasonCode = 0x96
	QuotaExceeded               ReasonCode = 0x97
	AdministrativeAction        ReasonCode = 0x98
	PayloadFormatInvalid        ReasonCode = 0x99
	RetainNotSupported          ReasonCode = 0x9A
	QoSNotSupported             ReasonCode = 0x9B
	UseAnotherServer            ReasonCode = 0x9C
	ServerMoved                 ReasonCode = 0x9D
	SharedSubsNotSupported      ReasonCode = 0x9E
	ConnectionRateExceeded      ReasonCode = 0x9F
	MaximumConnectTime          ReasonCode = 0xA0
	SubscriptionIDsNotSupported ReasonCode = 0xA1
	WildcardSubsNotSupported    ReasonCode = 0xA2
)

// V311ConnackCode maps a CONNACK reason to the MQTT 3.1.1 return code that
// means the same (3.1.1 section 3.2.2.3); ok is false when 3.1.1 has none, in
// which case the server closes the connection without a CONNACK.
func V311ConnackCode(c ReasonCode) (code byte, ok bool) {
	switch c {
	case Success:
		return 0, true
	case UnsupportedProtocolVersion:
		return 1, true
	case ClientIdentifierNotValid:
		return 2, true
	case ServerUnavailable, ServerBusy:
		return 3, true
	case BadUsernameOrPassword:
		return 4, true
	case NotAuthorized, Banned, ServerMoved, UseAnotherServer:
		return 5, true // 3.1.1 has no "go elsewhere": the client is refused
	}
	return 0, false
}

// Error is a refused packet: Code is the reason code the engine answers with
// (for 3.1.1 it closes the connection, or answers CONNACK through
// V311ConnackCode). Compare with errors.Is against ErrMalformed and its
// siblings, which match any Error of the same code.
type Error struct {
	Code ReasonCode
	Msg  string
	Err  error // the cause, if any (an I/O error, a topic error)
}

func (e *Error) Error() string {
	s := fmt.Sprintf("mqtt packet: %s (reason 0x%02X)", e.Msg, byte(e.Code))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every Error of a code match that code's sentinel below, whatever
// its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is; never returned themselves.
var (
	ErrMalformed          = &Error{Code: MalformedPacket}
	ErrProtocol           = &Error{Code: ProtocolError}
	ErrUnsupportedVersion = &Error{Code: UnsupportedProtocolVersion}
	ErrTooLarge           = &Error{Code: PacketTooLarge}
	ErrTopicNameInvalid   = &Error{Code: TopicNameInvalid}
	ErrTopicFilterInvalid = &Error{Code: TopicFilterInvalid}
)

// ErrIncomplete is Decode's answer when the bytes end inside a packet: read
// more and call again. It is not a refusal.
var ErrIncomplete = errors.New("mqtt packet: incomplete")

// Reason is the reason code an error calls for: its Error's code, or
// UnspecifiedError for anything else (an I/O error).
func Reason(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}

func malformed(format string, args ...any) error {
	return &Error{Code: MalformedPacket, Msg: fmt.Sprintf(format, args...)}
}

func protocolErr(format string, args ...any) error {
	return &Error{Code: ProtocolError, Msg: fmt.Sprintf(format, args...)}
}

// The reason codes each MQTT 5 packet may carry (MQTT 5.0 table 2-6, and
// the table of each packet's section). A code outside its packet's set is
// refused as malformed on decode and on encode: a peer answering PUBACK
// 0x01 aborts clients (mochi-mqtt did), so the engine must not be able to.
const (
	connackCodes    = "\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8A\x8C\x90\x95\x97\x99\x9A\x9B\x9C\x9D\x9F"
	pubackCodes     = "\x00\x10\x80\x83\x87\x90\x91\x97\x99" // PUBACK and PUBREC
	pubrelCodes     = "\x00\x92"                             // PUBREL and PUBCOMP
	subackCodes     = "\x00\x01\x02\x80\x83\x87\x8F\x91\x97\x9E\xA1\xA2"
	unsubackCodes   = "\x00\x11\x80\x83\x87\x8F\x91"
	disconnectCodes = "\x00\x04\x80\x81\x82\x83\x87\x89\x8B\x8D\x8E\x8F\x90\x93\x94\x95\x96\x97\x98\x99\x9A\x9B\x9C\x9D\x9E\x9F\xA0\xA1\xA2"
	authCodes       = "\x00\x18\x19"
	// MQTT 3.1.1 return codes (3.1.1 3.2.2.3, 3.9.3).
	v311ConnackCodes = "\x00\x01\x02\x03\x04\x05"
	v311SubackCodes  = "\x00\x01\x02\x80"
)

// checkReason refuses a reason code that t may not carry under v.
func checkReason(t Type, v Version, c ReasonCode) error {
	var set string
	switch {
	case t == TypeConnack && v == V5:
		set = connackCodes
	case t == TypeConnack:
		set = v311ConnackCodes
	case t == TypeSuback && v == V5:
		set = subackCodes
	case t == TypeSuback:
		set = v311SubackCodes
	case v != V5:
		return nil // no other 3.1.1 packet carries a code
	case t == TypePuback, t == TypePubrec:
		set = pubackCodes
	case t == TypePubrel, t == TypePubcomp:
		set = pubrelCodes
	case t == TypeUnsuback:
		set = unsubackCodes
	case t == TypeDisconnect:
		set = disconnectCodes
	case t == TypeAuth:
		set = authCodes
	}
	if strings.IndexByte(set, byte(c)) < 0 {
		return malformed("reason code 0x%02X is not one %s carries", byte(c), t)
	}
	return nil
}
