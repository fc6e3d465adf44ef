package httpapi

import "encoding/json"

// examples are the request bodies the OpenAPI document shows for each
// operation that takes one, keyed "METHOD path". They are valid requests
// (the document's test sends them, with its own ProductKey in place of
// a1B2c3D4e5F), so a reader can copy one and go.
var examples = map[string]any{
	"POST /v1/products": map[string]any{"name": "Smart meter", "nodeType": "direct", "dynamicRegistration": "auto",
		"topicClasses": []map[string]string{{"suffix": "update", "operation": "pub"}, {"suffix": "get", "operation": "sub"}, {"suffix": "cmd/+", "operation": "sub", "description": "commands"}}},
	"PATCH /v1/products/{productKey}":              map[string]any{"description": "Meters of building 7"},
	"POST /v1/products/{productKey}/topic-classes": map[string]any{"suffix": "cmd/+", "operation": "sub", "description": "commands to the meter"},
	"PUT /v1/products/{productKey}/topic-classes": map[string]any{"topicClasses": []map[string]string{
		{"suffix": "update", "operation": "pub", "description": "the device reports data"},
		{"suffix": "update/error", "operation": "pub", "description": "the device reports errors"},
		{"suffix": "get", "operation": "sub", "description": "the device receives data"},
		{"suffix": "cmd/+", "operation": "sub", "description": "commands to the meter"}}},
	"PUT /v1/products/{productKey}/tsl":            json.RawMessage(`{"properties":[{"identifier":"Temperature","name":"Temperature","accessMode":"rw","dataType":{"type":"float","specs":{"min":"-40","max":"120","step":"0.1","unit":"°C"}}}],"events":[],"services":[]}`),
	"POST /v1/products/{productKey}/devices:batch": map[string]any{"count": 2},
	"POST /v1/products/{productKey}/devices":       map[string]any{"deviceName": "meter-0001", "nickname": "Lobby meter", "attributes": map[string]string{"floor": "1"}},
	"PUT /v1/products/{productKey}/devices/{deviceName}/certificate": map[string]any{
		"certificatePem": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n"},
	"POST /v1/products/{productKey}/devices/{deviceName}/subdevices": map[string]any{
		"subdevices": []map[string]string{{"productKey": "a1B2c3D4e5F", "deviceName": "sensor-0001"}}},
	"DELETE /v1/products/{productKey}/devices/{deviceName}/subdevices": map[string]any{
		"subdevices": []map[string]string{{"productKey": "a1B2c3D4e5F", "deviceName": "sensor-0001"}}},
	"POST /v1/products/{productKey}/devices/{deviceName}/subdevices:notify-add": map[string]any{
		"subdevices": []map[string]string{{"productKey": "a1B2c3D4e5F", "deviceName": "sensor-0001"}}},
	"POST /v1/products/{productKey}/devices/{deviceName}/subdevices:permit": map[string]any{"productKey": "a1B2c3D4e5F", "time": 60},
	"POST /v1/products/{productKey}/devices/{deviceName}/found:accept": map[string]any{
		"subdevices": []map[string]string{{"productKey": "a1B2c3D4e5F", "deviceName": "sensor-0001"}}},
	"PUT /v1/products/{productKey}/devices/{deviceName}/properties":            map[string]any{"params": map[string]any{"Temperature": 21.5}},
	"PUT /v1/products/{productKey}/devices/{deviceName}/desired-properties":    map[string]any{"values": map[string]any{"Temperature": 21.5}},
	"PUT /v1/products/{productKey}/config":                                     map[string]any{"content": "{\"reportIntervalSeconds\": 60}"},
	"POST /v1/products/{productKey}/devices/{deviceName}/services/{serviceId}": map[string]any{"params": map[string]any{"Offset": 1.5}, "sync": true, "timeoutMs": 3000},
	"POST /v1/products/{productKey}/devices/{deviceName}/rrpc":                 map[string]any{"topic": "user/get", "payload": "ping", "timeoutMs": 3000},
	"PATCH /v1/products/{productKey}/devices/{deviceName}":                     map[string]any{"nickname": "Lobby meter", "attributes": map[string]string{"floor": "2"}},
	"POST /v1/apikeys":          map[string]any{"name": "dashboard", "role": "readonly"},
	"PATCH /v1/apikeys/{keyId}": map[string]any{"role": "operator"},
	"POST /v1/accounts":         map[string]any{"name": "Tenant B"},
	"POST /v1/register": map[string]any{"productKey": "a1B2c3D4e5F", "deviceId": "SN-0001",
		"token": "3f1c0a7e9b2d4c6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f", "metadata": map[string]string{"model": "M-1"}},
	"PUT /v1/products/{productKey}/shadow-settings":                            map[string]any{"history": 20},
	"PUT /v1/products/{productKey}/devices/{deviceName}/shadows":               shadowExample,
	"POST /v1/products/{productKey}/devices/{deviceName}/shadows":              shadowExample,
	"PUT /v1/products/{productKey}/devices/{deviceName}/shadows/{shadowName}":  shadowExample,
	"POST /v1/products/{productKey}/devices/{deviceName}/shadows/{shadowName}": shadowExample,
	"POST /things/{thingName}/shadow":                                          shadowExample,
	"POST /v1/cas": map[string]any{"certificatePem": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n",
		"verificationCertificatePem": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n", "mode": "jitp",
		"template": map[string]any{"productKey": "a1B2c3D4e5F", "nameFrom": "cn"}},

	// distribution
	"POST /v1/instances": map[string]any{"instanceId": "sg-1", "name": "Singapore", "region": "ap-southeast-1", "mqtt": "sg.iot.example.com:1883",
		"mqtts": "sg.iot.example.com:8883", "backupIp": "203.0.113.10", "apiUrl": "https://sg.iot.example.com:8443", "credential": "k_0123.secret-of-an-admin-key-there"},
	"PUT /v1/instances/{instanceId}":                                  map[string]any{"name": "Singapore", "region": "ap-southeast-1", "mqtts": "sg.iot.example.com:8883", "backupIp": "203.0.113.10"},
	"POST /v1/distribution/policies":                                  distPolicyExample("nearest"),
	"PUT /v1/distribution/policies/{policyId}":                        distPolicyExample(""),
	"PUT /v1/products/{productKey}/devices/{deviceName}/provisioning": map[string]any{"targetIotInstanceId": "corral"},
	"POST /v1/distribution/authorizations":                            map[string]any{"authCode": "9f86d081884c7d659a2feaa0c55ad015", "targetUid": "acc-b"},
	"POST /v1/distribution/authorizations:release":                    map[string]any{"grant": "5f2b1c0e8a7d4c3b9e6f1a2d3c4b5a69"},
	"POST /v1/distribution/jobs": map[string]any{"productKey": "a1B2c3D4e5F", "deviceNames": []string{"meter-0001", "meter-0002"},
		"strategy": 0, "targetInstanceId": "sg-1"},
	"POST /v1/distribution/jobs:plan": map[string]any{"productKey": "a1B2c3D4e5F", "csv": "deviceName\nmeter-0001\nmeter-0002\n",
		"strategy": 1, "policyId": "nearest"},
	"PUT /v1/distribution/imports/products/{productKey}": map[string]any{"sourceInstanceId": "cn-shanghai",
		"product": map[string]any{"productKey": "a1B2c3D4e5F", "product": map[string]any{"productKey": "a1B2c3D4e5F", "name": "meters", "nodeType": "direct", "authType": "secret"}}},
	"PUT /v1/distribution/imports/products/{productKey}/devices/{deviceName}": map[string]any{"productKey": "a1B2c3D4e5F", "deviceName": "meter-0001",
		"sealedSecret": "AQIDBA==", "sourceInstanceId": "cn-shanghai"},
}

var shadowExample = map[string]any{"state": map[string]any{"desired": map[string]any{"color": "green"}}, "clientToken": "c-1"}

// queryExamples are the documented examples of required query parameters.
var queryExamples = map[string]map[string]string{
	"POST /v1/publish": {"topic": "/a1B2c3D4e5F/meter-0001/user/update", "qos": "1"},
}

// distPolicyExample is a proximity policy example; "corral" is the
// default id of the corral serving the document.
func distPolicyExample(id string) map[string]any {
	p := map[string]any{"name": "Nearest region", "fallback": "cn-shanghai",
		"regions": []map[string]any{
			{"region": "cn-shanghai", "instances": []map[string]any{{"instanceId": "corral", "weight": 1}}},
			{"region": "ap-southeast-1", "instances": []map[string]any{{"instanceId": "corral", "weight": 1}}}},
		"cidrs":     []map[string]string{{"cidr": "10.20.0.0/16", "region": "ap-southeast-1"}},
		"countries": map[string]string{"SG": "ap-southeast-1", "EU": "ap-southeast-1"}}
	if id != "" {
		p["policyId"] = id
	}
	return p
}
