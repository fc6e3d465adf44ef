package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/corral-iot/corral/internal/provision"
	"github.com/corral-iot/corral/internal/registry"
)

// Provisioner runs device registrations.
type Provisioner interface {
	Dynamic(ctx context.Context, req provision.Request) (provision.Result, error)
	ClientDriven(ctx context.Context, req provision.Request) (provision.Result, error)
}

// alinkReply is the Alibaba reply envelope, fields in the order the Link
// SDKs expect: code first.
type alinkReply struct {
	Code    int          `json:"code"`
	Data    *alinkTriple `json:"data,omitempty"`
	Message string       `json:"message"`
}

type alinkTriple struct {
	ProductKey   string `json:"productKey"`
	DeviceName   string `json:"deviceName"`
	DeviceSecret string `json:"deviceSecret"`
}

// registrationStatus maps a registration refusal to its HTTP status.
func registrationStatus(err error) int {
	switch {
	case errors.Is(err, provision.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, provision.ErrBadSignature):
		return http.StatusUnauthorized
	case errors.Is(err, provision.ErrUnknownProduct), errors.Is(err, provision.ErrUnknownDevice):
		return http.StatusNotFound
	case errors.Is(err, provision.ErrNotEnabled), errors.Is(err, provision.ErrDenied), errors.Is(err, provision.ErrDisabled),
		errors.Is(err, provision.ErrDistributed):
		return http.StatusForbidden
	case errors.Is(err, provision.ErrAlreadyRegistered), errors.Is(err, provision.ErrReplayed):
		return http.StatusConflict
	case errors.Is(err, provision.ErrRateLimited):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

const maxRegisterBody = 4 << 10

// dynamicRegister serves Alibaba's POST /auth/register/device: a form of
// productKey, deviceName, random, sign and signMethod.
func (a *API) dynamicRegister(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, rep alinkReply) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(rep)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(http.StatusMethodNotAllowed, alinkReply{Code: provision.CodeInvalid, Message: "use POST with a form body"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegisterBody))
	if err != nil {
		reply(http.StatusRequestEntityTooLarge, alinkReply{Code: provision.CodeInvalid, Message: "request body is over 4096 bytes"})
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		reply(http.StatusBadRequest, alinkReply{Code: provision.CodeInvalid, Message: "request parameter error: body is not a form"})
		return
	}
	req := provision.Request{Path: provision.PathHTTPS, Source: r.RemoteAddr}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"productKey", &req.ProductKey}, {"deviceName", &req.DeviceName}, {"random", &req.Random}, {"sign", &req.Sign}, {"signMethod", &req.SignMethod}} {
		if len(form[f.name]) > 1 {
			reply(http.StatusBadRequest, alinkReply{Code: provision.CodeInvalid, Message: "request parameter error: " + f.name + " given twice"})
			return
		}
		*f.dst = form.Get(f.name)
	}
	if req.SignMethod == "" {
		req.SignMethod = "hmacsha256"
	}
	res, err := a.o.Provisioner.Dynamic(r.Context(), req)
	if err != nil {
		reply(registrationStatus(err), alinkReply{Code: codeOf(err), Message: err.Error()})
		return
	}
	reply(http.StatusOK, alinkReply{Code: provision.CodeSuccess, Message: "success",
		Data: &alinkTriple{ProductKey: res.Device.ProductKey, DeviceName: res.Device.DeviceName, DeviceSecret: res.Device.DeviceSecret}})
}

func codeOf(err error) int {
	var pe *provision.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return provision.CodeInternal
}

// clientRegisterInput is a client-driven registration.
type clientRegisterInput struct {
	ProductKey string            `json:"productKey"`
	DeviceID   string            `json:"deviceId" doc:"the device's own id (serial number, MAC); becomes its DeviceName"`
	Token      string            `json:"token" doc:"hex HMAC-SHA256 of deviceId under the product's registration key"`
	Metadata   map[string]string `json:"metadata,omitempty" doc:"model, firmware, how to reach it…; stored as device attributes"`
}

type clientRegistered struct {
	ProductKey   string            `json:"productKey"`
	DeviceName   string            `json:"deviceName"`
	DeviceSecret string            `json:"deviceSecret"`
	IotID        string            `json:"iotId"`
	Outcome      string            `json:"outcome" doc:"created, issued, returned or rotated"`
	Endpoints    map[string]string `json:"endpoints,omitempty"`
}

type registrationKey struct {
	ProductKey      string `json:"productKey"`
	RegistrationKey string `json:"registrationKey" doc:"derive each device's token as hex(HMAC-SHA256(registrationKey, deviceId)) at manufacturing"`
}

func (a *API) clientRegister(c *call) (any, error) {
	if c.r.TLS == nil && !a.o.DynRegPlainHTTP {
		// The answer is a DeviceSecret: never in clear.
		return nil, fmt.Errorf("client-driven registration is served on the HTTPS listener only: %w", registry.ErrNotFound)
	}
	var in clientRegisterInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	res, err := a.o.Provisioner.ClientDriven(c.ctx(), provision.Request{Path: provision.PathClient, ProductKey: in.ProductKey,
		DeviceName: in.DeviceID, Token: in.Token, Metadata: in.Metadata, Source: c.r.RemoteAddr})
	if err != nil {
		return nil, err
	}
	d := res.Device
	c.w.Header().Set("Cache-Control", "no-store")
	return clientRegistered{d.ProductKey, d.DeviceName, d.DeviceSecret, d.IotID, string(res.Outcome), res.Endpoints}, nil
}

func (a *API) registrationKey(c *call) (any, error) {
	k, err := a.reg.RegistrationKey(c.ctx(), c.p, c.param("productKey"))
	if err != nil {
		return nil, err
	}
	c.w.Header().Set("Cache-Control", "no-store")
	return registrationKey{c.param("productKey"), k}, nil
}

var _ = registry.ErrNotFound
