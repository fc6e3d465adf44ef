package netlisten_test

import (
	"net"
	"testing"

	"github.com/corral-iot/corral/internal/netlisten"
)

// BenchmarkAccept is one connection from dial to its first byte read, on
// a plain listener and behind a PROXY v1 header: what the header stage
// (a goroutine and a parse per connection) adds to an accept.
func BenchmarkAccept(b *testing.B) {
	for _, bc := range []struct {
		name  string
		proxy *netlisten.Proxy
		first string
	}{
		{"plain", nil, "x"},
		{"proxy-v1", &netlisten.Proxy{Trusted: loopback}, v1 + "x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := netlisten.Listen(netlisten.Config{Addr: "127.0.0.1:0", Proxy: bc.proxy})
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			buf := make([]byte, 1)
			for b.Loop() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c.Write([]byte(bc.first))
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Read(buf); err != nil {
					b.Fatal(err)
				}
				s.Close()
				c.Close()
			}
		})
	}
}
