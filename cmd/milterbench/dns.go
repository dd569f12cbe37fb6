package main

import (
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// dnsServer is the corpus's authoritative DNS server: internal/dnstest (which
// counts queries and delays answers), optionally also answering on a fixed
// address such as 127.0.0.53:53 for peers that can only use port 53.
type dnsServer struct {
	*dnstest.Server
	addr  string
	extra []*dns.Server
}

// startDNS serves zone on 127.0.0.1:random and, when listen is not empty,
// on listen too (UDP and TCP). addr is where clients should send queries.
func startDNS(zone, listen string) (*dnsServer, error) {
	// dnstest.Start binds UDP on a random port and then TCP on the same
	// number, which another process may hold: try again a few times.
	var srv *dnstest.Server
	var err error
	for range 10 {
		if srv, err = dnstest.Start(zone); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	d := &dnsServer{Server: srv, addr: srv.Addr}
	if listen == "" {
		return d, nil
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("dns: %w", err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		srv.Stop()
		return nil, fmt.Errorf("dns: %w", err)
	}
	d.addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	d.extra = []*dns.Server{
		{PacketConn: pc, Handler: srv, NotifyStartedFunc: notify},
		{Listener: ln, Handler: srv, NotifyStartedFunc: notify},
	}
	for _, s := range d.extra {
		go s.ActivateAndServe()
	}
	for range d.extra {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			d.stop()
			return nil, fmt.Errorf("dns: %s did not start", listen)
		}
	}
	return d, nil
}

func (d *dnsServer) stop() {
	for _, s := range d.extra {
		s.Shutdown()
	}
	d.Server.Stop()
}
