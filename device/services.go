package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Reply is the platform's answer to an Alink request.
type Reply struct {
	ID      string          `json:"id"`
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

// Call sends an Alink request on /sys/{pk}/{dn}/{rest} (or, for rest
// under "ext/…", /{rest} with the device's own ProductKey and DeviceName
// already in it) and waits for its reply on the same topic + "_reply".
// The method is rest with dots for slashes, as the Link SDKs send it. A
// reply with a code other than 200 is an error wrapping ErrPlatform, and
// the reply is returned too.
func (c *Client) Call(ctx context.Context, rest string, params any) (Reply, error) {
	topic := "/sys/" + c.o.Triple.ProductKey + "/" + c.o.Triple.DeviceName + "/" + rest
	if strings.HasPrefix(rest, "/") {
		topic = rest
		_, rest, _ = strings.Cut(rest, "/"+c.o.Triple.ProductKey+"/"+c.o.Triple.DeviceName+"/")
	}
	return c.call(ctx, topic, strings.ReplaceAll(rest, "/", "."), params)
}

func (c *Client) call(ctx context.Context, topic, method string, params any) (Reply, error) {
	id := strconv.FormatInt(c.ids.Add(1), 10)
	body, err := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": params, "method": method})
	if err != nil {
		return Reply{}, err
	}
	if err := c.routeReplies(ctx, topic+"_reply"); err != nil {
		return Reply{}, err
	}
	ch := make(chan Reply, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	// QoS 0, as the Link SDKs send requests: the reply is the
	// acknowledgement (and paho v1.5.1 races resending stored QoS 1
	// packets on reconnect).
	if err := c.Publish(ctx, topic, 0, body); err != nil {
		return Reply{}, err
	}
	select {
	case r := <-ch:
		if r.Code != 200 {
			return r, fmt.Errorf("%w: %s: code %d: %s", ErrPlatform, method, r.Code, r.Message)
		}
		return r, nil
	case <-ctx.Done():
		return Reply{}, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// ErrPlatform is a failed reply from the platform.
var ErrPlatform = errors.New("platform refused the request")

// listen routes messages on filter to h: locally when the platform
// subscribed the session itself (ServerSubscribe), else by subscribing.
func (c *Client) listen(ctx context.Context, filter string, qos byte, h Handler) error {
	if c.o.ServerSubscribe {
		c.Handle(filter, h)
		return nil
	}
	return c.Subscribe(ctx, filter, qos, h)
}

// routeReplies makes sure replies on topic reach onReply: routed locally
// when the platform subscribed the session (ServerSubscribe), subscribed
// otherwise; once per topic.
func (c *Client) routeReplies(ctx context.Context, topic string) error {
	c.mu.Lock()
	done := c.replies[topic]
	c.replies[topic] = true
	c.mu.Unlock()
	if done {
		return nil
	}
	if err := c.listen(ctx, topic, 0, c.onReply); err != nil {
		c.mu.Lock()
		delete(c.replies, topic)
		c.mu.Unlock()
		return err
	}
	return nil
}

// onReply hands a reply to the Call waiting for its id; the first copy
// wins (a reply may match two routes).
func (c *Client) onReply(m Message) {
	var r Reply
	if json.Unmarshal(m.Payload, &r) != nil {
		return
	}
	c.mu.Lock()
	ch := c.pending[r.ID]
	delete(c.pending, r.ID)
	c.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// PostProperties reports property values (thing.event.property.post).
func (c *Client) PostProperties(ctx context.Context, values map[string]any) error {
	_, err := c.Call(ctx, "thing/event/property/post", values)
	return err
}

// PostEvent reports an event of the thing model (thing.event.{id}.post).
func (c *Client) PostEvent(ctx context.Context, id string, value map[string]any) error {
	_, err := c.Call(ctx, "thing/event/"+id+"/post", map[string]any{"value": value, "time": c.o.Now().UnixMilli()})
	return err
}

// UpdateTags sets device tags (thing.deviceinfo.update).
func (c *Client) UpdateTags(ctx context.Context, tags map[string]string) error {
	params := make([]map[string]string, 0, len(tags))
	for k, v := range tags {
		params = append(params, map[string]string{"attrKey": k, "attrValue": v})
	}
	_, err := c.Call(ctx, "thing/deviceinfo/update", params)
	return err
}

// DeleteTags removes device tags (thing.deviceinfo.delete).
func (c *Client) DeleteTags(ctx context.Context, keys ...string) error {
	params := make([]map[string]string, len(keys))
	for i, k := range keys {
		params[i] = map[string]string{"attrKey": k}
	}
	_, err := c.Call(ctx, "thing/deviceinfo/delete", params)
	return err
}

// ThingModel fetches the product's TSL (thing.dsltemplate.get).
func (c *Client) ThingModel(ctx context.Context) (json.RawMessage, error) {
	r, err := c.Call(ctx, "thing/dsltemplate/get", map[string]any{})
	return r.Data, err
}

// ServerTime asks the platform's clock over NTP
// (/ext/ntp/{pk}/{dn}/request → …/response) and returns the current
// server time, corrected for half the round trip as the Link SDKs do:
// (serverRecvTime + serverSendTime + deviceRecvTime - deviceSendTime) / 2.
func (c *Client) ServerTime(ctx context.Context) (time.Time, error) {
	base := "/ext/ntp/" + c.o.Triple.ProductKey + "/" + c.o.Triple.DeviceName + "/"
	got := make(chan Message, 1)
	err := c.listen(ctx, base+"response", 0, func(m Message) {
		select {
		case got <- m:
		default:
		}
	})
	if err != nil {
		return time.Time{}, err
	}
	sent := c.o.Now().UnixMilli()
	body, _ := json.Marshal(map[string]string{"deviceSendTime": strconv.FormatInt(sent, 10)})
	if err := c.Publish(ctx, base+"request", 0, body); err != nil {
		return time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	for {
		select {
		case m := <-got:
			var r struct{ DeviceSendTime, ServerRecvTime, ServerSendTime string }
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				return time.Time{}, fmt.Errorf("ntp response: %w", err)
			}
			if r.DeviceSendTime != strconv.FormatInt(sent, 10) {
				continue // an answer to an earlier request
			}
			recv, err1 := strconv.ParseInt(r.ServerRecvTime, 10, 64)
			send, err2 := strconv.ParseInt(r.ServerSendTime, 10, 64)
			if err1 != nil || err2 != nil {
				return time.Time{}, fmt.Errorf("ntp response: times are not milliseconds: %q %q", r.ServerRecvTime, r.ServerSendTime)
			}
			now := c.o.Now().UnixMilli()
			return time.UnixMilli((recv + send + now - sent) / 2), nil
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("ntp: %w", ctx.Err())
		}
	}
}
