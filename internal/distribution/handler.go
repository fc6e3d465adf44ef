package distribution

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// BootstrapPath is where devices ask for their endpoint: POST with a form
// body, or GET BootstrapPath/regionId/{id}.
const BootstrapPath = "/auth/bootstrap"

// maxForm bounds a bootstrap request body.
const maxForm = 1 << 10

// Handler serves the bootstrap endpoint to devices.
type Handler struct {
	s *Service
	// plain also serves requests that came without TLS.
	plain bool
}

// Handler returns the bootstrap endpoint's handler; plainHTTP also serves
// it on plain HTTP listeners (the answer holds no secret, but a device
// reached in clear can be sent anywhere).
func (s *Service) Handler(plainHTTP bool) *Handler { return &Handler{s: s, plain: plainHTTP} }

// errorReply is a refusal's body: the Link SDK gives up on any status but
// 200, and a device's log shows the message.
type errorReply struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func reply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func replyError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	b, _ := json.Marshal(errorReply{Code: status, Message: msg})
	reply(w, status, b)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil && !h.plain {
		replyError(w, http.StatusNotFound, "bootstrap is served on the HTTPS listener only")
		return
	}
	req := Request{RegionID: -1, Source: r.RemoteAddr, TLS: r.TLS != nil}
	switch rest := strings.TrimPrefix(r.URL.Path, BootstrapPath); {
	case rest == "" || rest == "/":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			replyError(w, http.StatusMethodNotAllowed, "use POST with a form body of productKey and deviceName")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForm))
		if err != nil {
			replyError(w, http.StatusRequestEntityTooLarge, "request body is over 1024 bytes")
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			replyError(w, http.StatusBadRequest, "request parameter error: body is not a form (productKey=…&deviceName=…)")
			return
		}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"productKey", &req.ProductKey}, {"deviceName", &req.DeviceName}, {"clientId", &req.ClientID}} {
			if len(form[f.name]) > 1 {
				replyError(w, http.StatusBadRequest, "request parameter error: "+f.name+" given twice")
				return
			}
			*f.dst = form.Get(f.name)
		}
	case strings.HasPrefix(rest, "/regionId/"):
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			replyError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		id, err := strconv.Atoi(strings.TrimPrefix(rest, "/regionId/"))
		if err != nil || id < 0 || id > 1000 {
			replyError(w, http.StatusBadRequest, "request parameter error: regionId must be a number such as 1 (ap-southeast-1)")
			return
		}
		req.RegionID = id
	default:
		replyError(w, http.StatusNotFound, "no such bootstrap path")
		return
	}
	a, err := h.s.Bootstrap(r.Context(), req)
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		replyError(w, ref.Status, ref.Message)
	case err != nil:
		replyError(w, http.StatusInternalServerError, "internal error")
	default:
		reply(w, http.StatusOK, a.Body())
	}
}
