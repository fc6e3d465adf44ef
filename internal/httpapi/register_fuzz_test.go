package httpapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// echoProvisioner accepts registrations whose sign is "ok".
type echoProvisioner struct{}

func (echoProvisioner) Dynamic(_ context.Context, r provision.Request) (provision.Result, error) {
	if r.Sign != "ok" {
		return provision.Result{}, &provision.Error{Kind: provision.ErrBadSignature, Code: provision.CodeBadSignature, Reason: "bad sign"}
	}
	return provision.Result{Device: registry.Device{ProductKey: r.ProductKey, DeviceName: r.DeviceName, DeviceSecret: "s"}}, nil
}

func (echoProvisioner) ClientDriven(context.Context, provision.Request) (provision.Result, error) {
	return provision.Result{}, nil
}

// FuzzDynamicRegisterForm feeds arbitrary bodies to /auth/register/device:
// it never panics, always answers the Alibaba envelope, and only a body
// the provisioner accepts gets code 200.
func FuzzDynamicRegisterForm(f *testing.F) {
	for _, s := range []string{
		"productKey=a1PK0000001&deviceName=dev1&random=1&sign=ok&signMethod=hmacsha256",
		"productKey=a&productKey=b", "%zz", "deviceName=%E2%82", "", "a=1&&&=", strings.Repeat("x", 5000),
	} {
		f.Add(s)
	}
	api := &API{o: Options{Provisioner: echoProvisioner{}, DynRegPlainHTTP: true}}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		api.dynamicRegister(rec, httptest.NewRequest("POST", "/auth/register/device", strings.NewReader(body)))
		var rep struct {
			Code    *int    `json:"code"`
			Message *string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil || rep.Code == nil || rep.Message == nil {
			t.Fatalf("answer %q is not the envelope", rec.Body.String())
		}
		if (*rep.Code == 200) != (rec.Code == 200) {
			t.Fatalf("code %d with HTTP %d", *rep.Code, rec.Code)
		}
		if *rep.Code == 200 && !strings.Contains(body, "sign=ok") {
			t.Fatalf("accepted %q", body)
		}
	})
}
