package registry

import (
	"context"
	"fmt"

	"github.com/corral-iot/corral/internal/audit"
)

// ProductEventKind says what changed about a product.
type ProductEventKind string

// Product event kinds.
const (
	ProductUpdated      ProductEventKind = "updated"       // its settings (auth type, registration, hook…)
	ProductDeleted      ProductEventKind = "deleted"       // it and its devices are gone
	ProductModelChanged ProductEventKind = "model_changed" // its thing model
	// ProductCAsChanged: a CA whose template names the product was
	// registered or revoked.
	ProductCAsChanged ProductEventKind = "cas_changed"
)

// ProductObserver is told about product changes made through the
// registry, so that caches of product settings drop them at once.
type ProductObserver interface {
	ProductChanged(ctx context.Context, kind ProductEventKind, pk string)
}

// AddProductObserver registers an observer of product changes.
func (s *Service) AddProductObserver(o ProductObserver) { s.products = append(s.products, o) }

func (s *Service) notifyProduct(ctx context.Context, kind ProductEventKind, pk string) {
	for _, o := range s.products {
		o.ProductChanged(ctx, kind, pk)
	}
}

// ProductInput creates a product. Empty fields take defaults: node type
// direct, auth type secret, dynamic registration off.
type ProductInput struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	NodeType    NodeType          `json:"nodeType,omitempty"`
	AuthType    AuthType          `json:"authType,omitempty"`
	DynReg      DynRegMode        `json:"dynamicRegistration,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	// ConnectWindow opts in to CONNECT timestamp freshness (seconds).
	ConnectWindow int `json:"connectTimestampWindowSeconds,omitempty"`
	// Provisioning holds the registration settings.
	Provisioning Provisioning `json:"provisioning,omitempty"`
	// TopicClasses are the product's custom topic classes; absent (or
	// null), the product gets DefaultTopicClasses; [] gives it none.
	TopicClasses []TopicClass `json:"topicClasses,omitempty"`
}

// ProductPatch changes a product; nil fields stay as they are. The node
// type cannot change once devices exist, so it is not patchable.
type ProductPatch struct {
	Name        *string            `json:"name,omitempty"`
	Description *string            `json:"description,omitempty"`
	AuthType    *AuthType          `json:"authType,omitempty"`
	DynReg      *DynRegMode        `json:"dynamicRegistration,omitempty"`
	Attributes  *map[string]string `json:"attributes,omitempty"`
	// ConnectWindow opts in to (or, with 0, out of) CONNECT timestamp freshness.
	ConnectWindow *int `json:"connectTimestampWindowSeconds,omitempty"`
	// Provisioning replaces the registration settings as a whole.
	Provisioning *Provisioning `json:"provisioning,omitempty"`
}

// validateProduct checks p, and its webhook URLs against the URL policy.
func (s *Service) validateProduct(p Product) error {
	if err := validateProduct(p); err != nil {
		return err
	}
	if s.urls == nil {
		return nil
	}
	pv := p.Provisioning
	if pv.HookURL != "" {
		if err := s.urls.CheckURL(pv.HookURL); err != nil {
			return invalid("provisioning.hookUrl", "%v", err)
		}
	}
	for i, u := range pv.EventURLs {
		if err := s.urls.CheckURL(u); err != nil {
			return invalid(fmt.Sprintf("provisioning.eventUrls[%d]", i), "%v", err)
		}
	}
	return nil
}

func validateProduct(p Product) error {
	if err := validateText("name", p.Name, MaxNameLen, true); err != nil {
		return err
	}
	if err := validateText("description", p.Description, MaxDescriptionLen, false); err != nil {
		return err
	}
	switch p.NodeType {
	case NodeDirect, NodeGateway, NodeSubdevice:
	default:
		return invalid("nodeType", "must be direct, gateway or subdevice")
	}
	switch p.AuthType {
	case AuthSecret, AuthX509:
	default:
		return invalid("authType", "must be secret or x509")
	}
	switch p.DynReg {
	case DynRegOff, DynRegWhitelist, DynRegAuto:
	default:
		return invalid("dynamicRegistration", "must be off, whitelist or auto")
	}
	if err := p.Provisioning.Validate(); err != nil {
		return err
	}
	if p.ConnectWindow < 0 || p.ConnectWindow > 7*24*3600 {
		return invalid("connectTimestampWindowSeconds", "must be 0 (off) to 604800 seconds")
	}
	if err := ValidateAttributes("attributes", p.Attributes); err != nil {
		return err
	}
	return ValidateTopicClasses("topicClasses", p.TopicClasses)
}

func productAAD(pk string) []byte { return []byte("product:" + pk) }

// CreateProduct creates a product in the caller's account with a generated
// ProductKey and ProductSecret; the returned product carries the secret.
func (s *Service) CreateProduct(ctx context.Context, p Principal, in ProductInput) (Product, error) {
	if err := need(p, RoleOperator); err != nil {
		return Product{}, err
	}
	prod := Product{AccountID: p.AccountID, Name: in.Name, Description: in.Description, NodeType: in.NodeType,
		AuthType: in.AuthType, DynReg: in.DynReg, Attributes: in.Attributes, ConnectWindow: in.ConnectWindow, Provisioning: in.Provisioning, TopicClasses: in.TopicClasses, CreatedAt: s.nowUTC()}
	if prod.NodeType == "" {
		prod.NodeType = NodeDirect
	}
	if prod.AuthType == "" {
		prod.AuthType = AuthSecret
	}
	if prod.DynReg == "" {
		prod.DynReg = DynRegOff
	}
	if prod.Attributes == nil {
		prod.Attributes = map[string]string{}
	}
	if prod.TopicClasses == nil {
		prod.TopicClasses = DefaultTopicClasses()
	}
	if err := s.validateProduct(prod); err != nil {
		return Product{}, err
	}
	secret, err := randString(s.rand, ProductSecretLen)
	if err != nil {
		return Product{}, err
	}
	for try := 0; ; try++ {
		pk, err := randString(s.rand, ProductKeyLen)
		if err != nil {
			return Product{}, err
		}
		prod.ProductKey = pk
		sealed, err := s.box.Seal([]byte(secret), productAAD(pk))
		if err != nil {
			return Product{}, fmt.Errorf("sealing product secret: %w", err)
		}
		err = s.store.CreateProduct(ctx, prod, sealed)
		if err == nil {
			break
		}
		if try < 3 && isConflict(err) {
			continue // ProductKey collision: draw again
		}
		return Product{}, fmt.Errorf("creating product: %w", err)
	}
	prod.ProductSecret = secret
	return prod, nil
}

// product returns a product of the caller's account.
func (s *Service) product(ctx context.Context, p Principal, pk string) (Product, []byte, error) {
	prod, sealed, err := s.store.GetProduct(ctx, pk)
	if err != nil {
		return Product{}, nil, fmt.Errorf("product %q: %w", pk, err)
	}
	if prod.AccountID != p.AccountID {
		return Product{}, nil, fmt.Errorf("product %q: %w", pk, ErrNotFound)
	}
	return prod, sealed, nil
}

// GetProduct returns a product of the caller's account, without its secret.
func (s *Service) GetProduct(ctx context.Context, p Principal, pk string) (Product, error) {
	if err := need(p, RoleReadonly); err != nil {
		return Product{}, err
	}
	prod, _, err := s.product(ctx, p, pk)
	return prod, err
}

// ListProducts lists the caller's products by ProductKey, after the cursor.
func (s *Service) ListProducts(ctx context.Context, p Principal, after string, limit int) ([]Product, error) {
	if err := need(p, RoleReadonly); err != nil {
		return nil, err
	}
	return s.store.ListProducts(ctx, p.AccountID, after, clampLimit(limit))
}

// UpdateProduct applies a patch to a product of the caller's account.
func (s *Service) UpdateProduct(ctx context.Context, p Principal, pk string, patch ProductPatch) (Product, error) {
	if err := need(p, RoleOperator); err != nil {
		return Product{}, err
	}
	prod, _, err := s.writableProduct(ctx, p, pk)
	if err != nil {
		return Product{}, err
	}
	if patch.Name != nil {
		prod.Name = *patch.Name
	}
	if patch.Description != nil {
		prod.Description = *patch.Description
	}
	if patch.AuthType != nil {
		prod.AuthType = *patch.AuthType
	}
	if patch.DynReg != nil {
		prod.DynReg = *patch.DynReg
	}
	if patch.Attributes != nil {
		prod.Attributes = *patch.Attributes
		if prod.Attributes == nil {
			prod.Attributes = map[string]string{}
		}
	}
	if patch.ConnectWindow != nil {
		prod.ConnectWindow = *patch.ConnectWindow
	}
	if patch.Provisioning != nil {
		prod.Provisioning = *patch.Provisioning
	}
	if err := s.validateProduct(prod); err != nil {
		return Product{}, err
	}
	if err := s.store.UpdateProduct(ctx, prod); err != nil {
		return Product{}, fmt.Errorf("updating product %q: %w", pk, err)
	}
	s.notifyProduct(ctx, ProductUpdated, pk)
	return prod, nil
}

// DeleteProduct deletes a product and all its devices; live device
// sessions are told through the observers.
func (s *Service) DeleteProduct(ctx context.Context, p Principal, pk string) error {
	if err := need(p, RoleOperator); err != nil {
		return err
	}
	if _, _, err := s.writableProduct(ctx, p, pk); err != nil {
		return err
	}
	var doomed []Device
	if len(s.observers) > 0 {
		after := ""
		for {
			page, err := s.store.ListDevices(ctx, DeviceFilter{ProductKey: pk, After: after, Limit: 1000})
			if err != nil {
				return fmt.Errorf("deleting product %q: %w", pk, err)
			}
			doomed = append(doomed, page...)
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].DeviceName
		}
	}
	if err := s.store.DeleteProduct(ctx, pk); err != nil {
		return fmt.Errorf("deleting product %q: %w", pk, err)
	}
	s.notifyProduct(ctx, ProductDeleted, pk)
	for _, d := range doomed {
		s.notify(ctx, DeviceDeleted, d)
	}
	s.record(ctx, audit.Entry{AccountID: p.AccountID, Actor: p.KeyID, Action: "product.delete", Target: pk, Outcome: "ok"})
	return nil
}

// LookupProduct returns any product with its plaintext ProductSecret, for
// in-process device-facing protocols (no account scope).
func (s *Service) LookupProduct(ctx context.Context, pk string) (Product, error) {
	prod, sealed, err := s.store.GetProduct(ctx, pk)
	if err != nil {
		return Product{}, fmt.Errorf("product %q: %w", pk, err)
	}
	secret, err := s.box.Open(sealed, productAAD(pk))
	if err != nil {
		return Product{}, fmt.Errorf("opening secret of product %q: %w", pk, err)
	}
	prod.ProductSecret = string(secret)
	return prod, nil
}

// MaxPage is the largest page a list returns. List calls take up to
// MaxPage+1 so that a caller can ask one item past its page to learn
// whether another page follows; more is cut to that.
const MaxPage = 1000

func clampLimit(n int) int {
	if n <= 0 {
		return 100
	}
	return min(n, MaxPage+1)
}
