package packet

import (
	"bytes"
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// sample is one non-default value of property id.
func sample(id int) Properties {
	switch id {
	case propPayloadFormat:
		return Properties{PayloadFormat: 1}
	case propMessageExpiry:
		return Properties{MessageExpiry: ptr(uint32(0))} // 0 set is not "none"
	case propContentType:
		return Properties{ContentType: "application/json"}
	case propResponseTopic:
		return Properties{ResponseTopic: "reply/to/me"}
	case propCorrelationData:
		return Properties{CorrelationData: []byte{0, 1, 2, 0xff}}
	case propSubscriptionID:
		return Properties{SubscriptionIDs: []uint32{MaxRemainingLength}}
	case propSessionExpiry:
		return Properties{SessionExpiry: ptr(uint32(0xFFFFFFFF))}
	case propAssignedClientID:
		return Properties{AssignedClientID: "auto-1F2E"}
	case propServerKeepAlive:
		return Properties{ServerKeepAlive: ptr(uint16(0))}
	case propAuthMethod:
		return Properties{AuthMethod: "SCRAM-SHA-1"}
	case propAuthData:
		// present, empty; data needs a method (a protocol error otherwise)
		return Properties{AuthMethod: "m", AuthData: []byte{}}
	case propRequestProblemInfo:
		return Properties{RequestProblemInfo: ptr(false)}
	case propWillDelay:
		return Properties{WillDelay: 30}
	case propRequestResponseInfo:
		return Properties{RequestResponseInfo: true}
	case propResponseInfo:
		return Properties{ResponseInfo: "resp/"}
	case propServerReference:
		return Properties{ServerReference: "other.example:1883"}
	case propReasonString:
		return Properties{ReasonString: "because ✓"}
	case propReceiveMaximum:
		return Properties{ReceiveMaximum: 1}
	case propTopicAliasMaximum:
		return Properties{TopicAliasMaximum: 10}
	case propTopicAlias:
		return Properties{TopicAlias: 3}
	case propMaximumQoS:
		return Properties{MaximumQoS: ptr(byte(0))}
	case propRetainAvailable:
		return Properties{RetainAvailable: ptr(false)}
	case propUser:
		return Properties{User: []UserProperty{{"k", "v1"}, {"k", "v2"}, {"", ""}, {"a", "b"}}}
	case propMaximumPacketSize:
		return Properties{MaximumPacketSize: 1024}
	case propWildcardSubAvail:
		return Properties{WildcardSubAvail: ptr(false)}
	case propSubIDAvail:
		return Properties{SubIDAvail: ptr(true)}
	case propSharedSubAvail:
		return Properties{SharedSubAvail: ptr(false)}
	}
	return Properties{}
}

var allProps = []int{propPayloadFormat, propMessageExpiry, propContentType, propResponseTopic,
	propCorrelationData, propSubscriptionID, propSessionExpiry, propAssignedClientID, propServerKeepAlive,
	propAuthMethod, propAuthData, propRequestProblemInfo, propWillDelay, propRequestResponseInfo,
	propResponseInfo, propServerReference, propReasonString, propReceiveMaximum, propTopicAliasMaximum,
	propTopicAlias, propMaximumQoS, propRetainAvailable, propUser, propMaximumPacketSize,
	propWildcardSubAvail, propSubIDAvail, propSharedSubAvail}

var allCtx = []propCtx{inConnect, inConnack, inPublish, inWill, inPubResp, inSubscribe, inSuback,
	inUnsubscribe, inUnsuback, inDisconnect, inAuth}

// merged is every property ctx allows, at once.
func merged(ctx propCtx) Properties {
	var p Properties
	for _, id := range allProps {
		if allowedIn(id)&ctx == 0 {
			continue
		}
		s := sample(id)
		mergeInto(&p, &s)
	}
	if ctx == inPublish {
		p.SubscriptionIDs = []uint32{1, 128, 16384, MaxRemainingLength} // repeats allowed
	}
	return p
}

// mergeInto copies the fields set in s into p.
func mergeInto(p, s *Properties) {
	pv, sv := reflect.ValueOf(p).Elem(), reflect.ValueOf(s).Elem()
	for i := range sv.NumField() {
		if !sv.Field(i).IsZero() {
			pv.Field(i).Set(sv.Field(i))
		}
	}
}

// host is a packet whose properties sit in ctx.
func host(ctx propCtx, props Properties) Packet {
	switch ctx {
	case inConnect:
		return &Connect{Version: V5, KeepAlive: 60, ClientID: "c", Properties: props}
	case inConnack:
		return &Connack{SessionPresent: true, Properties: props}
	case inPublish:
		return &Publish{QoS: 1, PacketID: 7, Topic: "a/b", Properties: props, Payload: []byte("x")}
	case inWill:
		return &Connect{Version: V5, ClientID: "c", Will: &Will{QoS: 2, Topic: "w", Payload: []byte("bye"), Properties: props}}
	case inPubResp:
		return &Pubrel{Ack{PacketID: 9, ReasonCode: PacketIdentifierNotFound, Properties: props}}
	case inSubscribe:
		return &Subscribe{PacketID: 1, Properties: props, Subscriptions: []Subscription{{Filter: "a/+"}}}
	case inSuback:
		return &Suback{PacketID: 1, Properties: props, ReasonCodes: []ReasonCode{GrantedQoS1}}
	case inUnsubscribe:
		return &Unsubscribe{PacketID: 1, Properties: props, Filters: []string{"a/#"}}
	case inUnsuback:
		return &Unsuback{PacketID: 1, Properties: props, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}
	case inDisconnect:
		return &Disconnect{ReasonCode: DisconnectWithWill, Properties: props}
	case inAuth:
		return &Auth{ReasonCode: ContinueAuthentication, Properties: props}
	}
	panic(ctx)
}

// roundTrip encodes p under v, decodes it through Decode and Read, and
// checks both give want.
func roundTrip(t *testing.T, p Packet, v Version, want Packet) []byte {
	t.Helper()
	b, err := p.Append(nil, v)
	if err != nil {
		t.Fatalf("encode %s v%d: %v", p.Type(), v, err)
	}
	got, n, err := Decode(b, v, 0)
	if err != nil {
		t.Fatalf("decode %s v%d: %v\n% x", p.Type(), v, err, b)
	}
	if n != len(b) {
		t.Fatalf("decode took %d of %d bytes", n, len(b))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s v%d round trip:\n got %#v\nwant %#v", p.Type(), v, got, want)
	}
	got2, err := Read(bytes.NewReader(b), v, 0)
	if err != nil || !reflect.DeepEqual(got2, want) {
		t.Fatalf("Read %s v%d: %v\n got %#v", p.Type(), v, err, got2)
	}
	// Appending to a non-empty slice keeps what was there.
	b2, _ := p.Append([]byte{0xAA}, v)
	if b2[0] != 0xAA || !bytes.Equal(b2[1:], b) {
		t.Fatalf("Append to a prefix changed the encoding")
	}
	return b
}

func TestEveryPropertyRoundTripsWhereAllowed(t *testing.T) {
	for _, id := range allProps {
		for _, ctx := range allCtx {
			p := host(ctx, sample(id))
			if allowedIn(id)&ctx == 0 {
				if _, err := p.Append(nil, V5); Reason(err) != MalformedPacket {
					t.Errorf("property 0x%02X in %s encoded: %v", id, ctx, err)
				}
				continue
			}
			roundTrip(t, p, V5, p)
		}
	}
}

func TestEveryPacketRoundTrips(t *testing.T) {
	for _, ctx := range allCtx {
		p := host(ctx, merged(ctx))
		roundTrip(t, p, V5, p)
	}
	connect := &Connect{Version: V5, CleanStart: true, KeepAlive: 65535, ClientID: "",
		Properties: merged(inConnect), UsernameFlag: true, Username: "", PasswordFlag: true, Password: []byte{},
		Will: &Will{QoS: 1, Retain: true, Topic: "dev/1/will", Payload: []byte{}, Properties: merged(inWill)}}
	cases := []struct {
		name string
		p    Packet
		v311 Packet // what 3.1.1 keeps; nil: the packet does not exist in 3.1.1
	}{
		{"connect full", connect, nil},
		{"connect v311", &Connect{Version: V311, KeepAlive: 30, ClientID: "id", UsernameFlag: true, Username: "u",
			PasswordFlag: true, Password: []byte("p"), Will: &Will{QoS: 2, Topic: "w", Payload: []byte("x")}}, nil},
		{"connect v5 password without user name", &Connect{Version: V5, ClientID: "id", PasswordFlag: true, Password: []byte("p")}, nil},
		{"connect bare", &Connect{Version: V5}, nil},
		{"connack", &Connack{ReasonCode: NotAuthorized, Properties: merged(inConnack)}, nil},
		{"connack v311 session present", &Connack{SessionPresent: true}, &Connack{SessionPresent: true}},
		{"publish qos0", &Publish{Topic: "t", Payload: []byte("hello")}, &Publish{Topic: "t", Payload: []byte("hello")}},
		{"publish qos2 dup retain", &Publish{Dup: true, QoS: 2, Retain: true, PacketID: 65535, Topic: "$SYS/x",
			Properties: merged(inPublish), Payload: []byte{}},
			&Publish{Dup: true, QoS: 2, Retain: true, PacketID: 65535, Topic: "$SYS/x", Payload: []byte{}}},
		{"publish alias only", &Publish{QoS: 1, PacketID: 1, Properties: Properties{TopicAlias: 2}, Payload: []byte{}}, nil},
		{"puback", &Puback{Ack{PacketID: 1}}, &Puback{Ack{PacketID: 1}}},
		{"puback reason only", &Puback{Ack{PacketID: 1, ReasonCode: NoMatchingSubscribers}}, &Puback{Ack{PacketID: 1}}},
		{"pubrec", &Pubrec{Ack{PacketID: 2, ReasonCode: QuotaExceeded, Properties: merged(inPubResp)}}, &Pubrec{Ack{PacketID: 2}}},
		{"pubrel", &Pubrel{Ack{PacketID: 3}}, &Pubrel{Ack{PacketID: 3}}},
		{"pubcomp", &Pubcomp{Ack{PacketID: 4, Properties: Properties{ReasonString: "ok"}}}, &Pubcomp{Ack{PacketID: 4}}},
		{"subscribe options", &Subscribe{PacketID: 10, Properties: merged(inSubscribe), Subscriptions: []Subscription{
			{Filter: "a/+/c", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			{Filter: "$share/g/x/#", QoS: 1, RetainHandling: 1},
			{Filter: "#"}}},
			&Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/+/c", QoS: 2}, {Filter: "$share/g/x/#", QoS: 1}, {Filter: "#"}}}},
		{"suback", &Suback{PacketID: 10, Properties: merged(inSuback), ReasonCodes: []ReasonCode{0, 1, 2, 0x80}},
			&Suback{PacketID: 10, ReasonCodes: []ReasonCode{0, 1, 2, 0x80}}},
		{"unsubscribe", &Unsubscribe{PacketID: 11, Properties: merged(inUnsubscribe), Filters: []string{"a", "b/#", ""}},
			&Unsubscribe{PacketID: 11, Filters: []string{"a", "b/#", ""}}},
		{"unsuback", &Unsuback{PacketID: 11, Properties: merged(inUnsuback), ReasonCodes: []ReasonCode{0, 0x11}},
			&Unsuback{PacketID: 11}},
		{"pingreq", &Pingreq{}, &Pingreq{}},
		{"pingresp", &Pingresp{}, &Pingresp{}},
		{"disconnect", &Disconnect{ReasonCode: ServerShuttingDown, Properties: merged(inDisconnect)}, &Disconnect{}},
		{"disconnect reason only", &Disconnect{ReasonCode: DisconnectWithWill}, &Disconnect{}},
		{"disconnect empty", &Disconnect{}, &Disconnect{}},
		{"auth", &Auth{ReasonCode: ReAuthenticate, Properties: merged(inAuth)}, nil},
		{"auth empty", &Auth{}, nil},
	}
	t.Run("connack v311 return code 5", func(t *testing.T) {
		roundTrip(t, &Connack{ReasonCode: 5}, V311, &Connack{ReasonCode: 5})
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, ok := tc.p.(*Connect); ok {
				roundTrip(t, c, c.Version, c)
				return
			}
			roundTrip(t, tc.p, V5, tc.p)
			if tc.v311 != nil {
				roundTrip(t, tc.p, V311, tc.v311)
			}
		})
	}
}

// Variable byte integer boundaries, as the remaining length of a PUBLISH.
func TestRemainingLengthBoundaries(t *testing.T) {
	for _, n := range []int{127, 128, 16383, 16384, 2097151, 2097152} {
		payload := make([]byte, n-3) // topic "t": 2+1 bytes
		p := &Publish{Topic: "t", Payload: payload}
		b := roundTrip(t, p, V311, p)
		if got := len(b) - 1 - n; got != varintLen(n) {
			t.Errorf("remaining length %d took %d bytes, want %d", n, got, varintLen(n))
		}
	}
	for _, v := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemainingLength} {
		b := appendVarint(nil, v)
		got, n, err := decodeVarint(b)
		if err != nil || got != v || n != len(b) || n != varintLen(v) {
			t.Errorf("varint %d: % x → %d, %d, %v", v, b, got, n, err)
		}
	}
	if _, err := appendHeader(nil, 0x30, MaxRemainingLength+1); Reason(err) != PacketTooLarge {
		t.Errorf("remaining length over the maximum encoded: %v", err)
	}
}

func TestEncodeRefusesStringsOver64K(t *testing.T) {
	long := string(make([]byte, 65536))
	for _, p := range []Packet{
		&Publish{Topic: long},
		&Connect{Version: V5, ClientID: long},
		&Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: long}}},
		&Disconnect{Properties: Properties{ReasonString: long}},
	} {
		if _, err := p.Append(nil, V5); err == nil {
			t.Errorf("%s with a 65,536-byte string encoded", p.Type())
		}
	}
}
