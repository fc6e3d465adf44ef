package provision_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/corral-iot/corral/internal/apptest"
)

// registerConcurrently sends n registrations of one DeviceName at once,
// each with its own random, and returns the secrets handed out and the
// codes of the refusals.
func registerConcurrently(t *testing.T, register func(url.Values) regReply, pk, secret, dn string, n int) (secrets []string, refused []int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		random := fmt.Sprintf("race%02d", i)
		f := url.Values{"productKey": {pk}, "deviceName": {dn}, "random": {random}, "sign": {regSign(secret, dn, pk, random)}, "signMethod": {"hmacsha256"}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := register(f)
			mu.Lock()
			defer mu.Unlock()
			if r.Code == 200 {
				secrets = append(secrets, r.Data.DeviceSecret)
			} else {
				refused = append(refused, r.Code)
			}
		}()
	}
	close(start)
	wg.Wait()
	return secrets, refused
}

// TestConcurrentRegistrationOfOneName: under the default policy (deny) a
// burst of registrations of one new name hands a secret out exactly once;
// under rotate every answer carries a secret, and the one stored (and
// connecting) afterwards is one of them: no secret nobody was given.
func TestConcurrentRegistrationOfOneName(t *testing.T) {
	s := apptest.Start(t)
	reg := func(f url.Values) regReply {
		_, r, _ := register(t, s, f)
		return r
	}
	deny := s.CreateProduct("deny", map[string]any{"dynamicRegistration": "auto"})
	secrets, refused := registerConcurrently(t, reg, deny.ProductKey, deny.ProductSecret, "same-name-01", 16)
	if len(secrets) != 1 || len(refused) != 15 {
		t.Fatalf("deny: %d secrets handed out, refusals %v", len(secrets), refused)
	}
	for _, c := range refused {
		if c != 6205 {
			t.Fatalf("deny: refusal code %d, want 6205 (already registered)", c)
		}
	}
	if !connects(t, s, deny.ProductKey, "same-name-01", secrets[0]) {
		t.Fatal("deny: the one secret handed out does not connect")
	}
	var list struct{ Devices []any }
	s.Admin("GET", "/v1/products/"+deny.ProductKey+"/devices", nil, 200).JSON(t, &list)
	if len(list.Devices) != 1 {
		t.Fatalf("deny: %d devices", len(list.Devices))
	}

	rot := s.CreateProduct("rot", map[string]any{"dynamicRegistration": "auto", "provisioning": map[string]any{"reRegister": "rotate"}})
	secrets, refused = registerConcurrently(t, reg, rot.ProductKey, rot.ProductSecret, "same-name-02", 16)
	if len(secrets) != 16 || len(refused) != 0 {
		t.Fatalf("rotate: %d secrets, refusals %v", len(secrets), refused)
	}
	var stored struct{ DeviceSecret string }
	s.Admin("GET", "/v1/products/"+rot.ProductKey+"/devices/same-name-02/secret", nil, 200).JSON(t, &stored)
	given := false
	for _, sec := range secrets {
		given = given || sec == stored.DeviceSecret
	}
	if !given {
		t.Fatal("rotate: the stored secret is none of those handed out")
	}
	if !connects(t, s, rot.ProductKey, "same-name-02", stored.DeviceSecret) {
		t.Fatal("rotate: the stored secret does not connect")
	}
}
