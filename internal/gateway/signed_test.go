package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// Signatures computed outside corral (Python hmac) over the Link SDK's
// sign string clientId{clientId}deviceName{dn}productKey{pk}timestamp{ts}
// (aiot_subdev.c _subdev_calculate_sign; iotkit-embedded dm_msg.c), with
// the sub-device's DeviceSecret "sub-device-secret".
const (
	vecSHA256  = "d395cec1982d380e6e1ee9e6e39a056a5f8cfd658b6a83d0256396b9b388a3f6" // clientId a1SubPK0001.sub01, ts 1524448722000
	vecSHA1    = "bbab8bcb2fc48322ca5b2b1e289a4cc8d7c8ef34"
	vecMD5     = "a69ee1a4c94ac30a1a5dab8434365f0c"
	vecNodeSHA = "2839ad4c81258d3ed8cae76d92faf8ac55599e4f" // Node SDK: clientId a1SubPK0001&sub01, ts 1700000000123 (a number), hmacsha1
)

// TestSignedParamsVariants: the shapes stock SDKs send for topo.add,
// combine.login and batch_login are all accepted, and a wrong signature
// in any of them is refused.
func TestSignedParamsVariants(t *testing.T) {
	entry := func(extra string) string {
		return `{"productKey":"a1SubPK0001","deviceName":"sub01","clientId":"a1SubPK0001.sub01",` + extra + `}`
	}
	for _, tt := range []struct {
		name, rest, payload string
		code                float64
	}{
		{"c v4 topo.add", "thing/topo/add", `{"id":"1","version":"1.0","params":[` + entry(`"timestamp":"1524448722000","signmethod":"hmacSha256","sign":"`+vecSHA256+`"`) + `]}`, 200},
		{"timestamp number", "thing/topo/add", `{"id":"2","params":[` + entry(`"timestamp":1524448722000,"signmethod":"hmacSha256","sign":"`+vecSHA256+`"`) + `]}`, 200},
		{"signMethod HmacSHA1", "thing/topo/add", `{"id":"3","params":[` + entry(`"timestamp":"1524448722000","signMethod":"HmacSHA1","sign":"`+vecSHA1+`"`) + `]}`, 200},
		{"hmacmd5, upper-case hex", "thing/topo/add", `{"id":"4","params":[` + entry(`"timestamp":"1524448722000","signmethod":"hmacmd5","sign":"`+strings.ToUpper(vecMD5)+`"`) + `]}`, 200},
		{"method empty", "thing/topo/add", `{"id":"5","method":"","params":[` + entry(`"timestamp":"1524448722000","sign":"`+vecSHA256+`"`) + `]}`, 200},
		{"wrong method for sign", "thing/topo/add", `{"id":"6","params":[` + entry(`"timestamp":"1524448722000","signmethod":"hmacsha1","sign":"`+vecSHA256+`"`) + `]}`, 401},
		{"timestamp changed", "thing/topo/add", `{"id":"7","params":[` + entry(`"timestamp":1524448722001,"sign":"`+vecSHA256+`"`) + `]}`, 401},
		{"unknown method", "thing/topo/add", `{"id":"8","params":[` + entry(`"timestamp":"1524448722000","signmethod":"sha256","sign":"`+vecSHA256+`"`) + `]}`, 460},
		{"timestamp object", "thing/topo/add", `{"id":"9","params":[` + entry(`"timestamp":{},"sign":"`+vecSHA256+`"`) + `]}`, 460},
		{"c v3 login", "combine/login", `{"id":"10","params":` + entry(`"timestamp":"1524448722000","signMethod":"hmacSha256","sign":"`+vecSHA256+`","cleanSession":"true"`) + `}`, 200},
		{"login, cleanSession bool, number ts", "combine/login", `{"id":"11","method":"","params":` + entry(`"timestamp":1524448722000,"signmethod":"HMACSHA256","sign":"`+vecSHA256+`","cleanSession":false`) + `}`, 200},
		{"node login", "combine/login", `{"id":"12","method":"combine.login","params":{"productKey":"a1SubPK0001","deviceName":"sub01","clientId":"a1SubPK0001&sub01","timestamp":1700000000123,"signMethod":"hmacsha1","sign":"` + vecNodeSHA + `","cleanSession":"false"}}`, 200},
		{"c v4 batch_login, method beside the list", "combine/batch_login", `{"id":"13","version":"1.0","params":{"signMethod":"hmacSha1","deviceList":[` + entry(`"timestamp":"1524448722000","cleanSession":"false","sign":"`+vecSHA1+`"`) + `]}}`, 200},
		{"batch_login, entry's method wins", "combine/batch_login", `{"id":"14","params":{"signMethod":"hmacSha1","deviceList":[` + entry(`"timestamp":"1524448722000","signmethod":"hmacmd5","sign":"`+vecMD5+`"`) + `]}}`, 200},
		{"batch_login, wrong list method", "combine/batch_login", `{"id":"15","params":{"signMethod":"hmacMd5","deviceList":[` + entry(`"timestamp":"1524448722000","sign":"`+vecSHA1+`"`) + `]}}`, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fzWorld{}
			s := New(Options{Broker: w, Registry: w, Provisioner: w})
			prefix := "/sys/"
			if strings.HasPrefix(tt.rest, "combine/") {
				prefix = "/ext/session/"
			}
			s.handle(prefix+fzGwPK+"/"+fzGwDN+"/"+tt.rest, []byte(tt.payload))
			if len(w.published) != 1 {
				t.Fatalf("%d replies", len(w.published))
			}
			var rep struct {
				ID      string
				Code    float64
				Message string
			}
			if err := json.Unmarshal(w.published[0].payload, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Code != tt.code {
				t.Fatalf("code %v (%s), want %v", rep.Code, rep.Message, tt.code)
			}
			var req struct{ ID string }
			json.Unmarshal([]byte(tt.payload), &req)
			if rep.ID != req.ID {
				t.Fatalf("reply id %q", rep.ID)
			}
			if tt.code == 200 && len(w.loggedIn)+len(w.attached) != 1 {
				t.Fatalf("logged in %v, attached %v", w.loggedIn, w.attached)
			}
		})
	}
}
