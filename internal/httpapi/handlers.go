package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corral-iot/corral/internal/audit"
	"github.com/corral-iot/corral/internal/gateway"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/thing"
)

const (
	admin    = string(registry.RoleAdmin)
	operator = string(registry.RoleOperator)
	readonly = string(registry.RoleReadonly)
)

// Response bodies.
type (
	productList struct {
		Products   []registry.Product `json:"products"`
		NextCursor string             `json:"nextCursor,omitempty"`
	}
	deviceList struct {
		Devices    []registry.Device `json:"devices"`
		NextCursor string            `json:"nextCursor,omitempty"`
	}
	batchResult struct {
		Devices []triple `json:"devices"`
	}
	triple struct {
		ProductKey   string `json:"productKey"`
		DeviceName   string `json:"deviceName"`
		DeviceSecret string `json:"deviceSecret"`
		IotID        string `json:"iotId"`
		ThingName    string `json:"thingName"`
	}
	secretBody struct {
		ProductKey   string `json:"productKey"`
		DeviceName   string `json:"deviceName"`
		DeviceSecret string `json:"deviceSecret"`
	}
	propList struct {
		Properties []registry.PropertyValue `json:"properties"`
	}
	desiredList struct {
		Desired []registry.DesiredValue `json:"desired"`
	}
	configInput struct {
		Content string `json:"content" doc:"the file, up to 64 KB (text; JSON, INI or whatever the devices read)"`
	}
	configBody struct {
		registry.ProductConfig
		Content string `json:"content"`
	}
	pushResult struct {
		Pushed int `json:"pushed" doc:"online devices told"`
	}
	callInput struct {
		Params    json.RawMessage `json:"params"`
		Sync      bool            `json:"sync,omitempty" doc:"wait for the device's answer (services of callType sync always do)"`
		TimeoutMs int             `json:"timeoutMs,omitempty" doc:"how long a sync call waits (default 5000, at most 60000)"`
	}
	permitInput struct {
		ProductKey string `json:"productKey" doc:"the sub-device product the gateway may add devices of"`
		Time       int    `json:"time" doc:"for how many seconds (1 to 86400)"`
	}
	foundList struct {
		Found []registry.FoundDevice `json:"found"`
	}
	rrpcInput struct {
		Topic           string `json:"topic" doc:"the custom topic after /{productKey}/{deviceName}/, e.g. user/cmd"`
		Payload         string `json:"payload" doc:"the request payload: text, or base64 with payloadEncoding base64"`
		PayloadEncoding string `json:"payloadEncoding,omitempty" doc:"text (default) or base64"`
		TimeoutMs       int    `json:"timeoutMs,omitempty" doc:"how long to wait for the answer (default 5000, at most 60000)"`
	}
	rrpcResult struct {
		RRPCID        string `json:"rrpcId"`
		Topic         string `json:"topic" doc:"the topic the request and the answer went on"`
		Payload       string `json:"payload,omitempty" doc:"the device's answer as text, when it is valid UTF-8"`
		PayloadBase64 string `json:"payloadBase64" doc:"the device's answer, base64"`
	}
	subRef struct {
		ProductKey string `json:"productKey"`
		DeviceName string `json:"deviceName"`
	}
	subInput struct {
		Subdevices []subRef `json:"subdevices"`
	}
	subList struct {
		Subdevices []registry.Device `json:"subdevices"`
	}
	regCode struct {
		RegistrationCode string `json:"registrationCode"`
	}
	caList struct {
		CAs []registry.CA `json:"cas"`
	}
	certList struct {
		Certificates []registry.Certificate `json:"certificates"`
	}
	keyInput struct {
		Name string        `json:"name,omitempty"`
		Role registry.Role `json:"role,omitempty" doc:"admin, operator or readonly (default)"`
	}
	keyList struct {
		Keys []registry.APIKey `json:"keys"`
	}
	accountInput struct {
		Name string `json:"name"`
	}
	accountCreated struct {
		Account  registry.Account `json:"account"`
		AdminKey registry.APIKey  `json:"adminKey"`
		Token    string           `json:"token" doc:"the admin key as a bearer token; shown once"`
	}
	accountList struct {
		Accounts []registry.Account `json:"accounts"`
	}
	keyCreated struct {
		registry.APIKey
		Token string `json:"token" doc:"the key as a bearer token; shown once"`
	}
	topicClassView struct {
		registry.TopicClass
		Template string `json:"template" doc:"the topics of the class as /{productKey}/${deviceName}/user/{suffix}"`
	}
	topicClassList struct {
		ProductKey   string           `json:"productKey"`
		TopicClasses []topicClassView `json:"topicClasses" doc:"in the order they are matched: the first class matching a topic decides"`
	}
	// topicClassInput and topicClassSet take a GET answer back as it is.
	topicClassInput struct {
		registry.TopicClass
		Template string `json:"template,omitempty" doc:"ignored (it follows from the product and the suffix)"`
	}
	topicClassSet struct {
		ProductKey   string            `json:"productKey,omitempty" doc:"ignored: the path names the product"`
		TopicClasses []topicClassInput `json:"topicClasses" doc:"in match order; [] for none"`
	}
	auditList struct {
		Entries    []audit.Entry `json:"entries"`
		NextCursor string        `json:"nextCursor,omitempty"`
	}
)

func (a *API) table() []*route {
	listQ := []param{{"limit", "integer", fmt.Sprintf("page size, 1 to %d (default 100); a page that is not the last carries nextCursor", maxPage)}, {"cursor", "string", "nextCursor of the previous page"}}
	return append([]*route{
		{Method: "POST", Path: "/v1/products", Summary: "Create a product", Tag: "products", Role: operator, Body: registry.ProductInput{}, Status: 201, Resp: registry.Product{}, h: a.createProduct},
		{Method: "GET", Path: "/v1/products", Summary: "List products", Tag: "products", Role: readonly, Query: listQ, Status: 200, Resp: productList{}, h: a.listProducts},
		{Method: "GET", Path: "/v1/products/{productKey}", Summary: "Get a product", Tag: "products", Role: readonly, Status: 200, Resp: registry.Product{}, h: a.getProduct},
		{Method: "PATCH", Path: "/v1/products/{productKey}", Summary: "Update a product", Tag: "products", Role: operator, Body: registry.ProductPatch{}, Status: 200, Resp: registry.Product{}, h: a.updateProduct},
		{Method: "DELETE", Path: "/v1/products/{productKey}", Summary: "Delete a product and its devices", Tag: "products", Role: operator, Status: 204, h: a.deleteProduct},

		{Method: "PUT", Path: "/v1/products/{productKey}/config", Summary: "Upload the product's remote configuration file (replacing any); devices fetch it with thing.config.get (an HTTPS URL and its SHA-256)", Tag: "products", Role: operator, Body: configInput{}, Status: 200, Resp: configBody{}, h: a.setConfig},
		{Method: "GET", Path: "/v1/products/{productKey}/config", Summary: "The product's remote configuration file", Tag: "products", Role: readonly, Status: 200, Resp: configBody{}, h: a.getConfig},
		{Method: "POST", Path: "/v1/products/{productKey}/config:push", Summary: "Tell the product's online devices of its configuration file (thing.config.push)", Tag: "products", Role: operator, Status: 200, Resp: pushResult{}, h: a.pushConfig},
		{Method: "GET", Path: "/v1/products/{productKey}/topic-classes", Summary: "The product's custom topic classes (/{productKey}/${deviceName}/user/{suffix}: pub, sub or all for the device), in the order they are matched", Tag: "products", Role: readonly, Status: 200, Resp: topicClassList{}, h: a.listTopicClasses},
		{Method: "PUT", Path: "/v1/products/{productKey}/topic-classes", Summary: "Replace all the product's topic classes (at most 50; [] leaves its devices no /user/ topic); connected devices get the new rights at once", Tag: "products", Role: operator, Body: topicClassSet{}, Status: 200, Resp: topicClassList{}, h: a.setTopicClasses},
		{Method: "POST", Path: "/v1/products/{productKey}/topic-classes", Summary: "Add a topic class, ahead of any class that would hide it (such as a catch-all #); an existing suffix is 409", Tag: "products", Role: operator, Body: topicClassInput{}, Status: 201, Resp: topicClassList{}, h: a.addTopicClass},
		{Method: "DELETE", Path: "/v1/products/{productKey}/topic-classes/{suffix}", Summary: "Delete a topic class by its suffix", Tag: "products", Role: operator, Status: 204, Rest: true,
			PathDoc: map[string]string{"suffix": "the class's suffix as it is, e.g. cmd/+ (its '/' may stay or be %2F); # is written %23"}, h: a.deleteTopicClass},

		{Method: "PUT", Path: "/v1/products/{productKey}/tsl", Summary: "Set the product's thing model (Alibaba TSL JSON), checked before it is stored", Tag: "things", Role: operator, Body: json.RawMessage{}, Status: 200, Resp: json.RawMessage{}, h: a.setTSL},
		{Method: "GET", Path: "/v1/products/{productKey}/tsl", Summary: "The product's thing model", Tag: "things", Role: readonly, Status: 200, Resp: json.RawMessage{}, h: a.getTSL},
		{Method: "POST", Path: "/v1/products/{productKey}/devices:batch", Summary: "Create up to 10,000 devices (names, a count, or a CSV body of names), all or none", Tag: "devices", Role: operator, Body: registry.BatchInput{}, Raw: "csv", Status: 201, Resp: batchResult{}, h: a.batchDevices},
		{Method: "POST", Path: "/v1/products/{productKey}/devices", Summary: "Create a device; the answer holds its triple", Tag: "devices", Role: operator, Body: registry.DeviceInput{}, Status: 201, Resp: registry.Device{}, h: a.createDevice},
		{Method: "GET", Path: "/v1/products/{productKey}/devices", Summary: "List devices", Tag: "devices", Role: readonly, Status: 200, Resp: deviceList{},
			Query: append([]param{{"status", "string", "inactive, online, offline or disabled"}, {"prefix", "string", "DeviceName prefix"}, {"attribute", "string", "key=value an attribute must match"}}, listQ...), h: a.listDevices},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/secret", Summary: "Read a device's secret (admins; audited)", Tag: "devices", Role: admin, AuditDenied: "device.secret.read", Status: 200, Resp: secretBody{}, h: a.deviceSecret},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/certificate/challenge", Summary: "A challenge (good 5 minutes, for this device only) to sign with a certificate's private key, proving possession when binding it", Tag: "devices", Role: operator, Status: 200, Resp: registry.CertificateChallenge{}, h: a.certChallenge},
		{Method: "PUT", Path: "/v1/products/{productKey}/devices/{deviceName}/certificate", Summary: "Bind an X.509 certificate to a device; it may then connect on the TLS listener with it. A certificate binds to one device in the instance (409); one issued by another account's CA is refused (403); one neither self-signed nor issued by a CA of this account needs a signed challenge (400 without)", Tag: "devices", Role: operator, Body: registry.CertificateBinding{}, Status: 200, Resp: registry.Device{}, h: a.bindCert},
		{Method: "DELETE", Path: "/v1/products/{productKey}/devices/{deviceName}/certificate", Summary: "Unbind a device's certificate and close a session made with it", Tag: "devices", Role: operator, Status: 200, Resp: registry.Device{}, h: a.unbindCert},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/subdevices", Summary: "List a gateway's sub-devices", Tag: "gateways", Role: readonly, Status: 200, Resp: subList{}, h: a.listSubs},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/subdevices", Summary: "Add sub-devices to a gateway (they move from any other gateway); the gateways hear thing.topo.change", Tag: "gateways", Role: operator, Body: subInput{}, Status: 200, Resp: subList{}, h: a.addSubs},
		{Method: "DELETE", Path: "/v1/products/{productKey}/devices/{deviceName}/subdevices", Summary: "Remove sub-devices from a gateway; it hears thing.topo.change", Tag: "gateways", Role: operator, Body: subInput{}, Status: 200, Resp: subList{}, h: a.removeSubs},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/subdevices:notify-add", Summary: "Ask the gateway to add these sub-devices to its topology (thing.topo.add.notify); it answers on …/thing/topo/add/notify_reply and adds them with thing.topo.add; 409 when the gateway is offline", Tag: "gateways", Role: operator, Body: subInput{}, Status: 200, Resp: gateway.Sent{}, h: a.notifyAdd},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/subdevices:permit", Summary: "Let the gateway add devices of a sub-device product for a time (thing.gateway.permit); 409 when the gateway is offline", Tag: "gateways", Role: operator, Body: permitInput{}, Status: 200, Resp: gateway.Sent{}, h: a.permit},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/found", Summary: "Sub-devices the gateway reported it discovered (thing.list.found) that no operator accepted yet, oldest first (at most 200 per gateway, the latest found)", Tag: "gateways", Role: readonly, Status: 200, Resp: foundList{}, h: a.listFound},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/found:accept", Summary: "Accept found sub-devices: they join the gateway's topology as with POST …/subdevices (the gateway hears thing.topo.change) and leave the found list; one not in the list is 404", Tag: "gateways", Role: operator, Body: subInput{}, Status: 200, Resp: subList{}, h: a.acceptFound},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/properties", Summary: "A device's latest property values", Tag: "things", Role: readonly, Status: 200, Resp: propList{}, h: a.getProps},
		{Method: "PUT", Path: "/v1/products/{productKey}/devices/{deviceName}/properties", Summary: "Set properties on the device (thing.service.property.set), checked against the thing model; sync waits for its answer", Tag: "things", Role: operator, Body: callInput{}, Status: 200, Resp: thing.Result{}, h: a.setProps},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}/desired-properties", Summary: "A device's desired property values, each with its version and the version the device acknowledged", Tag: "things", Role: readonly, Status: 200, Resp: desiredList{}, h: a.getDesired},
		{Method: "PUT", Path: "/v1/products/{productKey}/devices/{deviceName}/desired-properties", Summary: "Set desired property values (checked against the thing model's writable properties); each set bumps the property's version, and a version given in versions that is not the current one is 409. An online device gets them at once as a property set, an offline one when it comes online; they stay until the device deletes them (thing.property.desired.delete) or DELETE here", Tag: "things", Role: operator, Body: registry.DesiredSet{}, Status: 200, Resp: desiredList{}, h: a.setDesired},
		{Method: "DELETE", Path: "/v1/products/{productKey}/devices/{deviceName}/desired-properties", Summary: "Delete desired property values: those named in identifiers, or all", Tag: "things", Role: operator, Status: 204,
			Query: []param{{"identifiers", "string", "comma-separated property identifiers (default: all)"}}, h: a.deleteDesired},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/services/{serviceId}", Summary: "Invoke a service: async, or sync (RRPC) waiting for the answer; 504 when the device does not answer in time", Tag: "things", Role: operator, Body: callInput{}, Status: 200, Resp: thing.Result{}, h: a.invoke},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}/rrpc", Summary: "Synchronous call on a custom topic (RRPC): the payload goes to the device on /ext/rrpc/{rrpcId}/{productKey}/{deviceName}/{topic} and the device's answer on the same topic is returned as it is; the topic must be of a class the device subscribes to (sub or all); 409 when the device is offline, 504 when it does not answer in time", Tag: "things", Role: operator, Body: rrpcInput{}, Status: 200, Resp: rrpcResult{}, h: a.customRRPC},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}:disable", Summary: "Disable a device and close its session", Tag: "devices", Role: operator, Status: 200, Resp: registry.Device{}, h: a.setDisabled(true)},
		{Method: "POST", Path: "/v1/products/{productKey}/devices/{deviceName}:enable", Summary: "Enable a device", Tag: "devices", Role: operator, Status: 200, Resp: registry.Device{}, h: a.setDisabled(false)},
		{Method: "GET", Path: "/v1/products/{productKey}/devices/{deviceName}", Summary: "Get a device", Tag: "devices", Role: readonly, Status: 200, Resp: registry.Device{}, h: a.getDevice},
		{Method: "PATCH", Path: "/v1/products/{productKey}/devices/{deviceName}", Summary: "Update a device's nickname, attributes or thing name (a new thing name closes its live session; a taken one is 409)", Tag: "devices", Role: operator, Body: registry.DevicePatch{}, Status: 200, Resp: registry.Device{}, h: a.updateDevice},
		{Method: "DELETE", Path: "/v1/products/{productKey}/devices/{deviceName}", Summary: "Delete a device and close its session", Tag: "devices", Role: operator, Status: 204, h: a.deleteDevice},

		{Method: "GET", Path: "/v1/things/{thingName}", Summary: "Get a device by its thing name ({productKey}.{deviceName} or the one set explicitly)", Tag: "devices", Role: readonly, Status: 200, Resp: registry.Device{}, h: a.getThing},

		{Method: "POST", Path: "/v1/apikeys", Summary: "Create an API key in the caller's account; its secret is shown once", Tag: "apikeys", Role: admin, Body: keyInput{}, Status: 201, Resp: keyCreated{}, h: a.createKey},
		{Method: "GET", Path: "/v1/apikeys", Summary: "List the account's API keys", Tag: "apikeys", Role: admin, Status: 200, Resp: keyList{}, h: a.listKeys},
		{Method: "PATCH", Path: "/v1/apikeys/{keyId}", Summary: "Change an API key's role (audited); its MQTT sessions close and reconnect with the new rights; an account's last admin key keeps its role (409)", Tag: "apikeys", Role: admin, Body: registry.APIKeyPatch{}, Status: 200, Resp: registry.APIKey{}, h: a.updateKey},
		{Method: "DELETE", Path: "/v1/apikeys/{keyId}", Summary: "Delete an API key and close its MQTT sessions; an account's last admin key stays (409)", Tag: "apikeys", Role: admin, Status: 204, h: a.deleteKey},

		{Method: "GET", Path: "/v1/accounts/self", Summary: "The caller's account", Tag: "accounts", Role: readonly, Status: 200, Resp: registry.Account{}, h: a.selfAccount},
		{Method: "POST", Path: "/v1/accounts", Summary: "Create an account and its first admin key", Tag: "accounts", Role: admin, System: true, Body: accountInput{}, Status: 201, Resp: accountCreated{}, h: a.createAccount},
		{Method: "GET", Path: "/v1/accounts", Summary: "List accounts", Tag: "accounts", Role: admin, System: true, Status: 200, Resp: accountList{}, h: a.listAccounts},

		{Method: "POST", Path: "/v1/publish", Summary: "Publish the body as an MQTT message to a device topic of the account", Tag: "messages", Role: operator, Status: 204,
			Query: []param{{"topic", "string", "e.g. /{productKey}/{deviceName}/user/get"}, {"qos", "integer", "0 (default) or 1"}, {"retain", "boolean", "retain the message"}}, h: a.publish},
		{Method: "POST", Path: "/v1/register", Summary: "Client-driven registration: a device presents its id, metadata and token and gets its triple and endpoints", Tag: "registration", Body: clientRegisterInput{}, Status: 200, Resp: clientRegistered{}, h: a.clientRegister},
		{Method: "GET", Path: "/v1/products/{productKey}/registration-key", Summary: "The product's key for client-driven registration tokens (created on first read; admins; audited)", Tag: "registration", Role: admin, Status: 200, Resp: registrationKey{}, h: a.registrationKey},
		{Method: "GET", Path: "/v1/cas/registration-code", Summary: "The account's code for CA proof of possession: sign a verification certificate with this Common Name", Tag: "x509", Role: admin, Status: 200, Resp: regCode{}, h: a.caCode},
		{Method: "POST", Path: "/v1/cas", Summary: "Register a CA certificate (with a verification certificate as proof of possession) for just-in-time registration or provisioning", Tag: "x509", Role: admin, Body: registry.CAInput{}, Status: 201, Resp: registry.CA{}, h: a.registerCA},
		{Method: "GET", Path: "/v1/cas", Summary: "List the account's CAs", Tag: "x509", Role: readonly, Status: 200, Resp: caList{}, h: a.listCAs},
		{Method: "POST", Path: "/v1/cas/{caId}:revoke", Summary: "Revoke a CA: certificates it signed no longer connect", Tag: "x509", Role: admin, Status: 200, Resp: registry.CA{}, h: a.revokeCA},
		{Method: "GET", Path: "/v1/certificates", Summary: "List device certificates from registered CAs", Tag: "x509", Role: readonly, Status: 200, Resp: certList{},
			Query: []param{{"status", "string", "pending, active or revoked"}}, h: a.listCerts},
		{Method: "POST", Path: "/v1/certificates/{fingerprint}:activate", Summary: "Activate a pending (JITR) certificate: its device is created and may connect", Tag: "x509", Role: operator, Status: 200, Resp: registry.Certificate{}, h: a.setCert(registry.CertActive)},
		{Method: "POST", Path: "/v1/certificates/{fingerprint}:revoke", Summary: "Revoke a device certificate and close its session", Tag: "x509", Role: operator, Status: 200, Resp: registry.Certificate{}, h: a.setCert(registry.CertRevoked)},
		{Method: "GET", Path: "/v1/audit", Summary: "The account's audit trail, newest first", Tag: "audit", Role: admin, Status: 200, Resp: auditList{},
			Query: append([]param{{"action", "string", "e.g. device.secret.read"}, {"target", "string", "e.g. {productKey}/{deviceName}"}, {"outcome", "string", "ok, denied, ..."}}, listQ...), h: a.listAudit},
	}, a.shadowRoutes()...)
}

// maxPage is the largest page a list answers. Handlers ask the layer
// below for one item more than the page to learn whether another follows,
// so that every page but the last carries a cursor.
const maxPage = min(registry.MaxPage, audit.MaxPage)

// limit is the page size a list call asks for: 100 by default; over
// maxPage is refused rather than cut, so that no caller mistakes a cut
// page for the whole list.
func (c *call) limit() (int, error) {
	s := c.r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPage {
		return 0, &badRequest{field: "limit", msg: fmt.Sprintf("limit must be an integer from 1 to %d (the largest page); follow nextCursor for more", maxPage)}
	}
	return n, nil
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (c *call) cursor() (string, error) {
	s := c.r.URL.Query().Get("cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", &badRequest{field: "cursor", msg: "cursor is not one this API handed out"}
	}
	return string(b), nil
}

// --- products ---

func (a *API) createProduct(c *call) (any, error) {
	var in registry.ProductInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return a.reg.CreateProduct(c.ctx(), c.p, in)
}

func (a *API) listProducts(c *call) (any, error) {
	limit, err := c.limit()
	if err != nil {
		return nil, err
	}
	after, err := c.cursor()
	if err != nil {
		return nil, err
	}
	ps, err := a.reg.ListProducts(c.ctx(), c.p, after, limit+1)
	if err != nil {
		return nil, err
	}
	out := productList{Products: ps}
	if len(ps) > limit {
		out.Products = ps[:limit]
		out.NextCursor = encodeCursor(ps[limit-1].ProductKey)
	}
	return out, nil
}

func (a *API) getProduct(c *call) (any, error) {
	return a.reg.GetProduct(c.ctx(), c.p, c.param("productKey"))
}

func (a *API) updateProduct(c *call) (any, error) {
	var patch registry.ProductPatch
	if err := c.decode(&patch); err != nil {
		return nil, err
	}
	return a.reg.UpdateProduct(c.ctx(), c.p, c.param("productKey"), patch)
}

func (a *API) deleteProduct(c *call) (any, error) {
	return nil, a.reg.DeleteProduct(c.ctx(), c.p, c.param("productKey"))
}

// --- topic classes ---

func topicClasses(pk string, cs []registry.TopicClass) topicClassList {
	out := topicClassList{ProductKey: pk, TopicClasses: make([]topicClassView, 0, len(cs))}
	for _, c := range cs {
		out.TopicClasses = append(out.TopicClasses, topicClassView{TopicClass: c, Template: c.Template(pk)})
	}
	return out
}

func (a *API) listTopicClasses(c *call) (any, error) {
	pk := c.param("productKey")
	cs, err := a.reg.TopicClasses(c.ctx(), c.p, pk)
	if err != nil {
		return nil, err
	}
	return topicClasses(pk, cs), nil
}

func (a *API) setTopicClasses(c *call) (any, error) {
	var in topicClassSet
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.TopicClasses == nil {
		return nil, &badRequest{field: "topicClasses", msg: "topicClasses is required ([] for none)"}
	}
	cs := make([]registry.TopicClass, len(in.TopicClasses))
	for i, tc := range in.TopicClasses {
		cs[i] = tc.TopicClass
	}
	pk := c.param("productKey")
	cs, err := a.reg.SetTopicClasses(c.ctx(), c.p, pk, cs)
	if err != nil {
		return nil, err
	}
	return topicClasses(pk, cs), nil
}

func (a *API) addTopicClass(c *call) (any, error) {
	var in topicClassInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	pk := c.param("productKey")
	cs, err := a.reg.AddTopicClass(c.ctx(), c.p, pk, in.TopicClass)
	if err != nil {
		return nil, err
	}
	return topicClasses(pk, cs), nil
}

func (a *API) deleteTopicClass(c *call) (any, error) {
	_, err := a.reg.DeleteTopicClass(c.ctx(), c.p, c.param("productKey"), c.param("suffix"))
	return nil, err
}

// --- devices ---

func (a *API) createDevice(c *call) (any, error) {
	var in registry.DeviceInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return a.reg.CreateDevice(c.ctx(), c.p, c.param("productKey"), in)
}

func (a *API) batchDevices(c *call) (any, error) {
	var in registry.BatchInput
	ct, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	switch ct {
	case "text/csv":
		names, things, err := ReadNamesCSV(c.r.Body, registry.MaxBatch)
		if err != nil {
			return nil, err
		}
		in.DeviceNames, in.ThingNames = names, things
	case "", "application/json":
		if err := c.decode(&in); err != nil {
			return nil, err
		}
	default:
		return nil, &badRequest{field: "Content-Type", msg: "send application/json or text/csv"}
	}
	ds, err := a.reg.CreateDevices(c.ctx(), c.p, c.param("productKey"), in)
	if err != nil {
		return nil, err
	}
	out := batchResult{Devices: make([]triple, len(ds))}
	for i, d := range ds {
		out.Devices[i] = triple{d.ProductKey, d.DeviceName, d.DeviceSecret, d.IotID, d.ThingName}
	}
	return out, nil
}

func (a *API) listDevices(c *call) (any, error) {
	limit, err := c.limit()
	if err != nil {
		return nil, err
	}
	after, err := c.cursor()
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	f := registry.DeviceFilter{ProductKey: c.param("productKey"), Status: registry.Status(q.Get("status")), NamePrefix: q.Get("prefix"), After: after, Limit: limit + 1}
	if attr := q.Get("attribute"); attr != "" {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			return nil, &badRequest{field: "attribute", msg: "attribute filter must be key=value"}
		}
		f.AttrKey, f.AttrValue = k, v
	}
	ds, err := a.reg.ListDevices(c.ctx(), c.p, f)
	if err != nil {
		return nil, err
	}
	out := deviceList{Devices: ds}
	if len(ds) > limit {
		out.Devices = ds[:limit]
		out.NextCursor = encodeCursor(ds[limit-1].DeviceName)
	}
	return out, nil
}

func (a *API) getDevice(c *call) (any, error) {
	return a.reg.GetDevice(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) updateDevice(c *call) (any, error) {
	var patch registry.DevicePatch
	if err := c.decode(&patch); err != nil {
		return nil, err
	}
	return a.reg.UpdateDevice(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), patch)
}

func (a *API) getThing(c *call) (any, error) {
	return a.reg.GetThing(c.ctx(), c.p, c.param("thingName"))
}

func (a *API) deleteDevice(c *call) (any, error) {
	return nil, a.reg.DeleteDevice(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) setDisabled(disabled bool) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		return a.reg.SetDisabled(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), disabled)
	}
}

func (a *API) deviceSecret(c *call) (any, error) {
	pk, dn := c.param("productKey"), c.param("deviceName")
	s, err := a.reg.DeviceSecret(c.ctx(), c.p, pk, dn)
	if err != nil {
		return nil, err
	}
	c.w.Header().Set("Cache-Control", "no-store")
	return secretBody{pk, dn, s}, nil
}

// --- keys and accounts ---

func (a *API) createKey(c *call) (any, error) {
	var in keyInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	k, err := a.reg.CreateAPIKey(c.ctx(), c.p, in.Name, in.Role)
	if err != nil {
		return nil, err
	}
	return keyCreated{APIKey: k, Token: k.Token()}, nil
}

func (a *API) listKeys(c *call) (any, error) {
	ks, err := a.reg.ListAPIKeys(c.ctx(), c.p)
	return keyList{Keys: ks}, err
}

func (a *API) updateKey(c *call) (any, error) {
	var patch registry.APIKeyPatch
	if err := c.decode(&patch); err != nil {
		return nil, err
	}
	return a.reg.UpdateAPIKey(c.ctx(), c.p, c.param("keyId"), patch)
}

func (a *API) deleteKey(c *call) (any, error) {
	return nil, a.reg.DeleteAPIKey(c.ctx(), c.p, c.param("keyId"))
}

func (a *API) selfAccount(c *call) (any, error) { return a.reg.Account(c.ctx(), c.p) }

func (a *API) createAccount(c *call) (any, error) {
	var in accountInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	acct, k, err := a.reg.CreateAccount(c.ctx(), c.p, in.Name)
	if err != nil {
		return nil, err
	}
	return accountCreated{Account: acct, AdminKey: k, Token: k.Token()}, nil
}

func (a *API) listAccounts(c *call) (any, error) {
	as, err := a.reg.ListAccounts(c.ctx(), c.p)
	return accountList{Accounts: as}, err
}

func (a *API) listAudit(c *call) (any, error) {
	if a.o.Audit == nil {
		return auditList{Entries: []audit.Entry{}}, nil
	}
	limit, err := c.limit()
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	f := audit.Filter{AccountID: c.p.AccountID, Action: q.Get("action"), Target: q.Get("target"), Outcome: q.Get("outcome"), Limit: limit + 1}
	if cur := q.Get("cursor"); cur != "" {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err != nil || n <= 0 {
			return nil, &badRequest{field: "cursor", msg: "cursor is not one this API handed out"}
		}
		f.Before = n
	}
	es, err := a.o.Audit.List(c.ctx(), f)
	if err != nil {
		return nil, err
	}
	out := auditList{Entries: es}
	if len(es) > limit {
		out.Entries = es[:limit]
		out.NextCursor = fmt.Sprint(es[limit-1].ID)
	}
	return out, nil
}

var _ http.Handler = (*API)(nil)

func (a *API) publish(c *call) (any, error) {
	if a.o.Publisher == nil {
		return nil, fmt.Errorf("no MQTT broker runs in this server: %w", registry.ErrNotFound)
	}
	q := c.r.URL.Query()
	var qos byte
	switch q.Get("qos") {
	case "", "0":
	case "1":
		qos = 1
	default:
		return nil, &badRequest{field: "qos", msg: "qos must be 0 or 1"}
	}
	retain := false
	if r := q.Get("retain"); r != "" {
		var err error
		if retain, err = strconv.ParseBool(r); err != nil {
			return nil, &badRequest{field: "retain", msg: "retain must be true or false"}
		}
	}
	payload, err := io.ReadAll(c.r.Body)
	if err != nil {
		return nil, err
	}
	return nil, a.o.Publisher.PublishFor(c.ctx(), c.p.AccountID, q.Get("topic"), payload, qos, retain)
}

func (a *API) bindCert(c *call) (any, error) {
	var in registry.CertificateBinding
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return a.reg.BindCertificate(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), in)
}

func (a *API) certChallenge(c *call) (any, error) {
	return a.reg.CertificateChallenge(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) unbindCert(c *call) (any, error) {
	return a.reg.UnbindCertificate(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) caCode(c *call) (any, error) {
	code, err := a.reg.CARegistrationCode(c.ctx(), c.p)
	return regCode{code}, err
}

func (a *API) registerCA(c *call) (any, error) {
	var in registry.CAInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	return a.reg.RegisterCA(c.ctx(), c.p, in)
}

func (a *API) listCAs(c *call) (any, error) {
	cas, err := a.reg.ListCAs(c.ctx(), c.p)
	return caList{cas}, err
}

func (a *API) revokeCA(c *call) (any, error) { return a.reg.RevokeCA(c.ctx(), c.p, c.param("caId")) }

func (a *API) listCerts(c *call) (any, error) {
	st := registry.CertStatus(c.r.URL.Query().Get("status"))
	switch st {
	case "", registry.CertActive, registry.CertPending, registry.CertRevoked:
	default:
		return nil, &badRequest{field: "status", msg: "status must be pending, active or revoked"}
	}
	cs, err := a.reg.ListCertificates(c.ctx(), c.p, st)
	return certList{cs}, err
}

func (a *API) setCert(st registry.CertStatus) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		return a.reg.SetCertificateStatus(c.ctx(), c.p, c.param("fingerprint"), st)
	}
}

func (a *API) gatewayFor(c *call) (registry.Device, error) {
	if a.o.Topology == nil {
		return registry.Device{}, fmt.Errorf("gateways are not served here: %w", registry.ErrNotFound)
	}
	return a.reg.GatewayOf(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
}

func (a *API) listSubs(c *call) (any, error) {
	gw, err := a.gatewayFor(c)
	if err != nil {
		return nil, err
	}
	ds, err := a.reg.Subdevices(c.ctx(), gw)
	return subList{ds}, err
}

func (a *API) subInput(c *call) (registry.Device, subInput, error) {
	gw, err := a.gatewayFor(c)
	if err != nil {
		return gw, subInput{}, err
	}
	if err := registry.CheckOperator(c.p); err != nil {
		return gw, subInput{}, err
	}
	var in subInput
	if err := c.decode(&in); err != nil {
		return gw, in, err
	}
	if len(in.Subdevices) == 0 || len(in.Subdevices) > registry.MaxBatch {
		return gw, in, &badRequest{field: "subdevices", msg: "give 1 to 10000 sub-devices"}
	}
	return gw, in, nil
}

func (a *API) addSubs(c *call) (any, error) {
	return a.attachSubs(c, func(ctx context.Context, gw registry.Device, subs []registry.Device) error {
		return a.o.Topology.Attach(ctx, gw, subs)
	})
}

func (a *API) acceptFound(c *call) (any, error) {
	return a.attachSubs(c, func(ctx context.Context, gw registry.Device, subs []registry.Device) error {
		return a.o.Topology.AcceptFound(ctx, gw, subs)
	})
}

// attachSubs reads a list of sub-devices for the gateway of the path,
// checks each is a device of a sub-device product of the caller's
// account, attaches them with attach and answers the gateway's list.
func (a *API) attachSubs(c *call, attach func(context.Context, registry.Device, []registry.Device) error) (any, error) {
	gw, subs, err := a.subDevices(c)
	if err != nil {
		return nil, err
	}
	if err := attach(c.ctx(), gw, subs); err != nil {
		return nil, err
	}
	ds, err := a.reg.Subdevices(c.ctx(), gw)
	return subList{ds}, err
}

func (a *API) notifyAdd(c *call) (any, error) {
	gw, subs, err := a.subDevices(c)
	if err != nil {
		return nil, err
	}
	if len(subs) > registry.MaxTopoBatch {
		return nil, &badRequest{field: "subdevices", msg: fmt.Sprintf("give 1 to %d sub-devices", registry.MaxTopoBatch)}
	}
	return a.o.Topology.NotifyAdd(c.ctx(), gw, subs)
}

func (a *API) permit(c *call) (any, error) {
	gw, err := a.gatewayFor(c)
	if err != nil {
		return nil, err
	}
	if err := registry.CheckOperator(c.p); err != nil {
		return nil, err
	}
	var in permitInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.Time < 1 || in.Time > 86400 {
		return nil, &badRequest{field: "time", msg: "time must be 1 to 86400 seconds"}
	}
	prod, err := a.reg.GetProduct(c.ctx(), c.p, in.ProductKey)
	if err != nil {
		return nil, err
	}
	if prod.NodeType != registry.NodeSubdevice {
		return nil, &badRequest{field: "productKey", msg: in.ProductKey + " is not a sub-device product"}
	}
	return a.o.Topology.Permit(c.ctx(), gw, in.ProductKey, in.Time)
}

func (a *API) listFound(c *call) (any, error) {
	gw, err := a.gatewayFor(c)
	if err != nil {
		return nil, err
	}
	fs, err := a.o.Topology.Found(c.ctx(), gw)
	return foundList{fs}, err
}

// subDevices reads the body's sub-devices for the gateway of the path:
// each a device of a sub-device product of the caller's account.
func (a *API) subDevices(c *call) (registry.Device, []registry.Device, error) {
	gw, in, err := a.subInput(c)
	if err != nil {
		return gw, nil, err
	}
	subs := make([]registry.Device, len(in.Subdevices))
	for i, r := range in.Subdevices {
		d, err := a.reg.GetDevice(c.ctx(), c.p, r.ProductKey, r.DeviceName)
		if err != nil {
			return gw, nil, err
		}
		prod, err := a.reg.GetProduct(c.ctx(), c.p, r.ProductKey)
		if err != nil {
			return gw, nil, err
		}
		if prod.NodeType != registry.NodeSubdevice {
			return gw, nil, &badRequest{field: fmt.Sprintf("subdevices[%d]", i), msg: r.ProductKey + " is not a sub-device product"}
		}
		subs[i] = d
	}
	return gw, subs, nil
}

func (a *API) removeSubs(c *call) (any, error) {
	gw, in, err := a.subInput(c)
	if err != nil {
		return nil, err
	}
	keys := make([][2]string, len(in.Subdevices))
	for i, r := range in.Subdevices {
		keys[i] = [2]string{r.ProductKey, r.DeviceName}
	}
	if err := a.o.Topology.Detach(c.ctx(), gw, keys); err != nil {
		return nil, err
	}
	ds, err := a.reg.Subdevices(c.ctx(), gw)
	return subList{ds}, err
}

func (a *API) setTSL(c *call) (any, error) {
	var raw json.RawMessage
	if err := c.decode(&raw); err != nil {
		return nil, err
	}
	m, err := a.reg.SetThingModel(c.ctx(), c.p, c.param("productKey"), raw)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (a *API) getTSL(c *call) (any, error) {
	return a.reg.ThingModel(c.ctx(), c.p, c.param("productKey"))
}

func (a *API) getProps(c *call) (any, error) {
	ps, err := a.reg.DeviceProperties(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
	return propList{ps}, err
}

func (a *API) setConfig(c *call) (any, error) {
	var in configInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	cfg, err := a.reg.SetProductConfig(c.ctx(), c.p, c.param("productKey"), []byte(in.Content))
	return configBody{cfg, string(cfg.Content)}, err
}

func (a *API) getConfig(c *call) (any, error) {
	cfg, err := a.reg.GetProductConfig(c.ctx(), c.p, c.param("productKey"))
	return configBody{cfg, string(cfg.Content)}, err
}

func (a *API) pushConfig(c *call) (any, error) {
	if a.o.Configs == nil {
		return nil, fmt.Errorf("remote configuration is not served here: %w", registry.ErrNotFound)
	}
	pk := c.param("productKey")
	if _, err := a.reg.GetProductConfig(c.ctx(), c.p, pk); err != nil {
		return nil, err
	}
	var names []string
	for after := ""; ; {
		ds, err := a.reg.ListDevices(c.ctx(), c.p, registry.DeviceFilter{ProductKey: pk, Status: registry.StatusOnline, After: after, Limit: registry.MaxPage})
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			names = append(names, d.DeviceName)
		}
		if len(ds) < registry.MaxPage {
			break
		}
		after = ds[len(ds)-1].DeviceName
	}
	n, err := a.o.Configs.Push(c.ctx(), pk, names)
	return pushResult{n}, err
}

func (a *API) getDesired(c *call) (any, error) {
	ds, err := a.reg.DesiredProperties(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"))
	return desiredList{ds}, err
}

func (a *API) setDesired(c *call) (any, error) {
	var in registry.DesiredSet
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	pk := c.param("productKey")
	check := func(vals map[string]json.RawMessage) error {
		m, err := a.reg.LookupThingModel(c.ctx(), pk)
		if err != nil || m == nil {
			return err // no model: nothing to check against
		}
		raw, err := json.Marshal(vals)
		if err != nil {
			return err
		}
		_, err = m.ValidatePropertySet(raw)
		return err
	}
	ds, err := a.reg.SetDesired(c.ctx(), c.p, pk, c.param("deviceName"), in, check)
	return desiredList{ds}, err
}

func (a *API) deleteDesired(c *call) (any, error) {
	var ids []string
	if q := c.r.URL.Query().Get("identifiers"); q != "" {
		ids = strings.Split(q, ",")
	}
	return nil, a.reg.DeleteDesired(c.ctx(), c.p, c.param("productKey"), c.param("deviceName"), ids)
}

func (a *API) thingCall(c *call, service string) (any, error) {
	if a.o.Things == nil {
		return nil, fmt.Errorf("thing models are not served here: %w", registry.ErrNotFound)
	}
	pk, dn := c.param("productKey"), c.param("deviceName")
	if _, err := a.reg.GetDevice(c.ctx(), c.p, pk, dn); err != nil {
		return nil, err
	}
	var in callInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.TimeoutMs < 0 || in.TimeoutMs > 60000 {
		return nil, &badRequest{field: "timeoutMs", msg: "timeoutMs must be 0 to 60000"}
	}
	return a.o.Things.Invoke(c.ctx(), thing.Call{ProductKey: pk, DeviceName: dn, Service: service, Params: in.Params,
		Sync: in.Sync, Timeout: time.Duration(in.TimeoutMs) * time.Millisecond})
}

func (a *API) setProps(c *call) (any, error) { return a.thingCall(c, "property.set") }

func (a *API) invoke(c *call) (any, error) {
	if c.param("serviceId") == "property.set" {
		return nil, &badRequest{field: "serviceId", msg: "set properties with PUT …/properties"}
	}
	return a.thingCall(c, c.param("serviceId"))
}

func (a *API) customRRPC(c *call) (any, error) {
	if a.o.Things == nil {
		return nil, fmt.Errorf("thing models are not served here: %w", registry.ErrNotFound)
	}
	pk, dn := c.param("productKey"), c.param("deviceName")
	if _, err := a.reg.GetDevice(c.ctx(), c.p, pk, dn); err != nil {
		return nil, err
	}
	var in rrpcInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	payload, err := rrpcPayload(in)
	if err != nil {
		return nil, err
	}
	if err := a.deviceSubscribes(c, pk, in.Topic); err != nil {
		return nil, err
	}
	r, err := a.o.Things.CustomRRPC(c.ctx(), thing.CustomCall{ProductKey: pk, DeviceName: dn, Topic: in.Topic, Payload: payload,
		Timeout: time.Duration(in.TimeoutMs) * time.Millisecond})
	if err != nil {
		return nil, err
	}
	out := rrpcResult{RRPCID: r.RRPCID, Topic: r.Topic, PayloadBase64: base64.StdEncoding.EncodeToString(r.Payload)}
	if utf8.Valid(r.Payload) {
		out.Payload = string(r.Payload)
	}
	return out, nil
}

// rrpcPayload checks a custom RRPC request and decodes its payload.
func rrpcPayload(in rrpcInput) ([]byte, error) {
	if in.TimeoutMs < 0 || in.TimeoutMs > 60000 {
		return nil, &badRequest{field: "timeoutMs", msg: "timeoutMs must be 0 to 60000"}
	}
	switch in.PayloadEncoding {
	case "", "text":
		return []byte(in.Payload), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(in.Payload)
		if err != nil {
			return nil, &badRequest{field: "payload", msg: "payload is not base64"}
		}
		return b, nil
	}
	return nil, &badRequest{field: "payloadEncoding", msg: "payloadEncoding must be text or base64"}
}

// deviceSubscribes checks that topic (user/…) is of one of the product's
// topic classes the device subscribes to (sub or all).
func (a *API) deviceSubscribes(c *call, pk, topic string) error {
	suffix, ok := strings.CutPrefix(topic, "user/")
	if !ok || suffix == "" || strings.ContainsAny(topic, "+#") {
		return &badRequest{field: "topic", msg: "topic must be a custom topic user/… without wildcards"}
	}
	classes, err := a.reg.TopicClasses(c.ctx(), c.p, pk)
	if err != nil {
		return err
	}
	if cl, ok := registry.MatchTopicClass(classes, suffix); !ok || (cl.Operation != registry.TopicSub && cl.Operation != registry.TopicAll) {
		return &badRequest{field: "topic", msg: "no topic class of the product lets the device subscribe to " + topic}
	}
	return nil
}
