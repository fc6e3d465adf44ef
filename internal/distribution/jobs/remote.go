package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/distribution"
)

// Credentials reads an instance's credential for calls to it
// (distribution.Service.Credential).
type Credentials interface {
	Credential(ctx context.Context, accountID, id string) ([]byte, error)
}

// HTTPRemote is the Remote over the destination's REST API, with the
// instance credential as its bearer key.
type HTTPRemote struct {
	Directory   Directory
	Credentials Credentials
	// Client makes the calls; nil: one with a 10 s timeout that keeps
	// only Go's default two idle connections per destination (a job's
	// workers then redial; see NewHTTPClient).
	Client *http.Client
}

// NewHTTPClient is an HTTPRemote's Client with a 10 s timeout that keeps
// conns idle connections per destination, so that a job's workers reuse
// their connections instead of dialling one per call.
func NewHTTPClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no limit over all destinations
	t.MaxIdleConnsPerHost = conns
	return &http.Client{Timeout: 10 * time.Second, Transport: t}
}

func (r HTTPRemote) do(ctx context.Context, t Target, method, path string, in, out any) error {
	inst, err := r.Directory.Instance(ctx, t.AccountID, t.InstanceID)
	if err != nil {
		return err
	}
	if inst.APIURL == "" {
		return fmt.Errorf("instance %s: %w: it has no apiUrl for instance-to-instance calls", t.InstanceID, ErrInvalid)
	}
	cred, err := r.Credentials.Credential(ctx, inst.AccountID, t.InstanceID) // "" for a system instance
	if err != nil {
		return fmt.Errorf("instance %s credential: %w", t.InstanceID, err)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(inst.APIURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("instance %s: %w", t.InstanceID, err)
	}
	req.Header.Set("Authorization", "Bearer "+string(cred))
	req.Header.Set("Content-Type", "application/json")
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("instance %s unreachable: %w", t.InstanceID, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(raw, &e)
		err := fmt.Errorf("instance %s answered %d: %s", t.InstanceID, resp.StatusCode, e.Message)
		switch resp.StatusCode {
		case http.StatusConflict:
			err = fmt.Errorf("%w: %w", ErrConflict, err)
		case http.StatusBadRequest:
			err = fmt.Errorf("%w: %w", ErrInvalid, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			err = fmt.Errorf("%w: instance %s refuses the credential (it must be an admin API key there): %w", ErrInvalid, t.InstanceID, err)
		}
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("instance %s answered: %w", t.InstanceID, err)
		}
	}
	return nil
}

// Authorize implements Remote.
func (r HTTPRemote) Authorize(ctx context.Context, t Target) (string, error) {
	var g Grant
	if err := r.do(ctx, t, "POST", "/v1/distribution/authorizations", Authorization{AuthCode: t.AuthCode, TargetAccountID: t.TargetAccountID}, &g); err != nil {
		return "", err
	}
	return g.Grant, nil
}

// Release implements Remote.
func (r HTTPRemote) Release(ctx context.Context, t Target) error {
	return r.do(ctx, t, "POST", "/v1/distribution/authorizations:release", Grant{Grant: t.AuthCode}, nil)
}

// PublicKey implements Remote.
func (r HTTPRemote) PublicKey(ctx context.Context, t Target) ([]byte, error) {
	var k TransitKey
	if err := r.do(ctx, t, "GET", "/v1/distribution/transit-key", nil, &k); err != nil {
		return nil, err
	}
	if k.InstanceID != t.InstanceID {
		return nil, fmt.Errorf("instance %s answered as %q: its apiUrl names another instance", t.InstanceID, k.InstanceID)
	}
	return k.PublicKey, nil
}

// ImportProduct implements Remote.
func (r HTTPRemote) ImportProduct(ctx context.Context, t Target, p Product) error {
	return r.do(ctx, t, "PUT", "/v1/distribution/imports/products/"+url.PathEscape(p.ProductKey),
		ProductImport{SourceInstanceID: t.SourceInstanceID, Product: p, Grant: t.AuthCode}, nil)
}

// ImportDevice implements Remote.
func (r HTTPRemote) ImportDevice(ctx context.Context, t Target, d DeviceImport) error {
	d.Grant = t.AuthCode
	return r.do(ctx, t, "PUT", "/v1/distribution/imports/products/"+url.PathEscape(d.ProductKey)+"/devices/"+url.PathEscape(d.DeviceName), d, nil)
}

// HTTPRecords are the Records of a distribution centre that is another
// instance: a job run here (a device distributed back from this
// instance, say) writes the centre's provisioning record through the
// centre's REST API, with the instance credential, so that the device
// bootstraps to its new instance there. The centre keeps the record's
// source and creation time itself.
type HTTPRecords struct {
	Remote HTTPRemote
	// Centre is the centre's instance id (a system instance here).
	Centre string
}

// GetRecord implements Records: the centre keeps what GetRecord is read
// for, so there is nothing to read here.
func (r HTTPRecords) GetRecord(context.Context, string, string) (distribution.Record, error) {
	return distribution.Record{}, fmt.Errorf("provisioning records are at instance %s: %w", r.Centre, distribution.ErrNotFound)
}

// PutRecord implements Records: the device's record at the centre points
// to the record's target instance.
func (r HTTPRecords) PutRecord(ctx context.Context, rec distribution.Record) error {
	if rec.TargetIotInstanceID == "" {
		return fmt.Errorf("provisioning record: %w: no target instance", ErrInvalid)
	}
	path := "/v1/products/" + url.PathEscape(rec.ProductKey) + "/devices/" + url.PathEscape(rec.DeviceName) + "/provisioning"
	err := r.Remote.do(ctx, Target{AccountID: rec.AccountID, InstanceID: r.Centre}, "PUT", path,
		distribution.RecordInput{TargetIotInstanceID: rec.TargetIotInstanceID}, nil)
	if err != nil {
		return fmt.Errorf("the centre's provisioning record: %w", err)
	}
	return nil
}
