package app

import (
	"github.com/corral-iot/corral/internal/shadowsvc"
)

// wireShadows builds the shadow service (issue 11) on the store, with its
// webhooks to the products' event URLs. The MQTT side (the AWS and
// Alibaba topics, presence) is wired here too, as an observer of the
// service and a subscriber of the broker.
func (a *App) wireShadows() {
	a.shadows = shadowsvc.New(shadowsvc.Options{Store: a.store, Settings: a.store, Devices: a.reg, Log: a.log.With("component", "shadow")})
	a.reg.AddProductObserver(a.shadows) // drops cached settings
	a.reg.AddObserver(a.shadows)        // drops cached devices
	a.shadows.AddObserver(&shadowsvc.Webhooks{Products: a.reg, Poster: a.hooks, Log: a.log})
	a.shadowMQTT = shadowsvc.NewMQTT(shadowsvc.MQTTOptions{Service: a.shadows, Broker: a.mqtt, Things: a.reg, Log: a.log.With("component", "shadow")})
	a.shadows.AddObserver(a.shadowMQTT)
	a.mqtt.AddSubscribeObserver(a.shadowMQTT)
	a.reg.AddObserver(a.shadowMQTT)
}
