// Command enginemem measures the resident memory an idle, accepted MQTT
// connection costs corral's engine (internal/mqtt/engine), out of process:
//
//	enginemem -serve 127.0.0.1:0            # prints its address, then RSS on each line read from stdin
//	enginemem -clients ADDR -n 5000         # holds n MQTT 5 / 3.1.1 connections open until killed
//	enginemem -clients ADDR -n 5000 -active # each subscribes and publishes once first
//
// Run the server, note its RSS after a GC, connect the clients, wait, and
// read the RSS again; the difference over n is the cost per connection.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/mqtt/engine"
	"github.com/corral-iot/corral/internal/mqtt/packet"
)

func main() {
	serve := flag.String("serve", "", "listen address: run the engine")
	heap := flag.String("heapprofile", "", "write a heap profile here at each report")
	clients := flag.String("clients", "", "engine address: hold connections")
	n := flag.Int("n", 5000, "connections to hold")
	active := flag.Bool("active", false, "each client subscribes and publishes a QoS 1 message before idling")
	flag.Parse()
	switch {
	case *serve != "":
		runServer(*serve, *heap)
	case *clients != "":
		runClients(*clients, *n, *active)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func runServer(addr, heap string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	s := engine.New(engine.Options{})
	go func() { _ = s.Serve(ln) }()
	fmt.Println(ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		runtime.GC()
		debug.FreeOSMemory()
		st := s.Stats()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("connections %d rss_kb %d goroutines %d stack_kb %d heap_inuse_kb %d\n",
			st.Connections, rssKB(), runtime.NumGoroutine(), ms.StackInuse>>10, ms.HeapInuse>>10)
		if heap != "" {
			if f, err := os.Create(heap); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Close(ctx)
}

func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(l[6:]), "%d", &kb)
			return kb
		}
	}
	return -1
}

func runClients(addr string, n int, active bool) {
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		v := packet.V5
		if i%2 == 1 {
			v = packet.V311
		}
		cp := &packet.Connect{Version: v, ClientID: fmt.Sprintf("idle-%d", i), CleanStart: true, KeepAlive: 600}
		b, _ := cp.Append(nil, v)
		if _, err := c.Write(b); err != nil {
			log.Fatal(err)
		}
		if _, err := packet.Read(c, v, 0); err != nil {
			log.Fatalf("connack %d: %v", i, err)
		}
		if active {
			topic := fmt.Sprintf("dev/%d/state", i)
			b, _ = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic, QoS: 1}}}).Append(nil, v)
			b, _ = (&packet.Publish{Topic: topic, QoS: 1, PacketID: 2, Payload: []byte("on")}).Append(b, v)
			if _, err := c.Write(b); err != nil {
				log.Fatal(err)
			}
			// SUBACK, PUBACK and the message itself, in some order.
			for range 3 {
				p, err := packet.Read(c, v, 0)
				if err != nil {
					log.Fatalf("client %d: %v", i, err)
				}
				if m, ok := p.(*packet.Publish); ok {
					b, _ = (&packet.Puback{Ack: packet.Ack{PacketID: m.PacketID}}).Append(nil, v)
					if _, err := c.Write(b); err != nil {
						log.Fatal(err)
					}
				}
			}
		}
		conns = append(conns, c)
	}
	fmt.Println("holding", len(conns))
	select {}
}
