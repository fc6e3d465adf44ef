// Package hostile is corral's end-to-end security suite: it starts a real
// server with two accounts whose products hold devices of the same names,
// API keys of every role in both, and attacks it as a hostile device, a
// hostile tenant and an anonymous client would, over MQTT, WebSocket, HTTP
// and the REST API. Each attack is a test that fails if the defence is
// removed; the package has no code outside its tests.
package hostile
