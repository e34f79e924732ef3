// Command coredns is CoreDNS built with the plugins the lab's cluster DNS uses: kubernetes, cache,
// errors, template, forward (to the outside network's DNS server, when the lab has one), plus
// health and ready so the lab can wait for it as a kubelet's probes would.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// The plugins in CoreDNS's own order (plugin.cfg): a Corefile's order does not matter, this does.
var directives = []string{"ready", "health", "errors", "cache", "template", "kubernetes", "forward"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
