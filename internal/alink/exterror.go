package alink

// CodeNoSession means a sub-device has no session: it is not logged in
// through its gateway. On /ext/error the Link SDK C answers it by logging
// the sub-device in again (combine.login).
const CodeNoSession = 520

// SubDeviceError builds the payload corral publishes on
// /ext/error/{gwPk}/{gwDn} to tell a gateway that an action for one of its
// sub-devices failed. It is a reply envelope whose data names the
// sub-device, as the Link SDK C reads it (iotkit-embedded
// dm_msg_ext_error_reply: id a string, code a number, data.productKey and
// data.deviceName strings; code 520 triggers a new combine.login):
//
//	{"id":"…","code":520,"data":{"productKey":"…","deviceName":"…"},"message":"…"}
func SubDeviceError(id string, code int, message, subPk, subDn string) []byte {
	return EncodeReply(Reply{ID: id, Code: code, Message: message,
		Data: struct {
			ProductKey string `json:"productKey"`
			DeviceName string `json:"deviceName"`
		}{subPk, subDn}})
}
