package gateway

import "github.com/corral-iot/corral/internal/alink"

// ReportSubError tells a gateway, on /ext/error/{gwPk}/{gwDn}, that an
// action for one of its sub-devices failed (alink.SubDeviceError). With
// code alink.CodeNoSession (520) the Link SDK logs the sub-device in again.
//
// The broker is the one to see a gateway publish for a sub-device that is
// not logged in (it refuses the publish); it calls this, through the app's
// wiring, rather than dropping the message in silence.
func (s *Service) ReportSubError(gwPk, gwDn, subPk, subDn string, code int, message string) {
	b := alink.SubDeviceError(s.nextID(), code, message, subPk, subDn)
	if err := s.o.Broker.Publish(alink.ErrorTopic(gwPk, gwDn), b, false, 0); err != nil {
		s.log.Warn("publishing /ext/error", "gateway", gwPk+"/"+gwDn, "err", err)
	}
}
