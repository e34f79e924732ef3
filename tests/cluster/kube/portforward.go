package main

// The lab kubelet's streaming server: the kubelet API's /portForward endpoint, served with the
// upstream streaming code (SPDY and WebSocket), so that `pods/portforward` through the real API
// server ends in the pod's network namespace as it does on a node with a container runtime.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Same as the kubelet's defaults (pkg/kubelet/server: streaming idle and stream creation timeouts).
const (
	idleTimeout           = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
	dialTimeout           = 5 * time.Second
)

// podNetns finds the network namespace of namespace/name from the lab's pod directory, where the
// lab writes one file per running pod holding its namespace path.
type podNetns struct{ dir string }

func (p podNetns) path(namespace, name string) (string, error) {
	if !isDNSName(namespace) || !isDNSName(name) {
		return "", fmt.Errorf("invalid pod name %q/%q", namespace, name)
	}
	raw, err := os.ReadFile(filepath.Join(p.dir, namespace, name))
	if err != nil {
		return "", fmt.Errorf("pod %s/%s is not running on this node", namespace, name)
	}
	return strings.TrimSpace(string(raw)), nil
}

// isDNSName: what Kubernetes allows in a namespace or pod name, so a name is never a path.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

type forwarder struct {
	netns     string
	namespace string
	name      string
}

func (f forwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	conn, err := dialInNetns(f.netns, "127.0.0.1:"+strconv.Itoa(int(port)))
	if err != nil {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace %s/%s: %w", port, f.namespace, f.name, err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, stream)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	}()
	_, _ = io.Copy(stream, conn)
	wg.Wait()
	return nil
}

// dialInNetns connects from inside the namespace at path: setns affects only this OS thread, so the
// goroutine stays on it until the socket exists; if switching back fails the thread is not
// returned to the pool (the goroutine exits with it locked, which ends the thread).
func dialInNetns(path, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer home.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", path, err)
	}
	conn, dialErr := net.DialTimeout("tcp", addr, dialTimeout)
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, errors.Join(dialErr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

func servePortForward(pods podNetns) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		// /portForward/{namespace}/{pod}[/{uid}]
		parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/portForward/"), "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			http.Error(w, "want /portForward/{namespace}/{pod}[/{uid}]", http.StatusBadRequest)
			return
		}
		netns, err := pods.path(parts[0], parts[1])
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		uid := ""
		if len(parts) == 3 {
			uid = parts[2]
		}
		opts, err := portforward.NewV4Options(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := forwarder{netns: netns, namespace: parts[0], name: parts[1]}
		portforward.ServePortForward(w, req, f, parts[1]+"_"+parts[0], uid, opts, idleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
	}
}

// apiServerClient is the client certificate's name kube-apiserver uses toward kubelets
// (--kubelet-client-certificate): every other holder of a certificate of the cluster CA (users,
// kube-proxy, CoreDNS) must go through the API server, where RBAC decides.
const apiServerClient = "kube-apiserver-kubelet-client"

func onlyAPIServer(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 || req.TLS.PeerCertificates[0].Subject.CommonName != apiServerClient {
			http.Error(w, "only the API server may port-forward here", http.StatusForbidden)
			return
		}
		next(w, req)
	}
}

// labKubelet serves the kubelet port a node's API server traffic arrives on: TLS with the node's
// serving certificate, and only clients holding a certificate of the cluster CA (the API server's
// kubelet-client certificate), as a kubelet with webhook-free x509 authentication does.
func labKubelet(args []string) int {
	fs := flag.NewFlagSet("lab-kubelet", flag.ContinueOnError)
	listen := fs.String("listen", "", "address:port to serve the kubelet API on")
	cert := fs.String("tls-cert-file", "", "serving certificate (PEM)")
	key := fs.String("tls-private-key-file", "", "serving key (PEM)")
	clientCA := fs.String("client-ca-file", "", "CA whose client certificates may connect (PEM)")
	podsDir := fs.String("pods-dir", "", "directory of NAMESPACE/NAME files, each holding a running pod's network namespace path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for name, v := range map[string]string{"--listen": *listen, "--tls-cert-file": *cert, "--tls-private-key-file": *key, "--client-ca-file": *clientCA, "--pods-dir": *podsDir} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "lab-kubelet: %s is required\n", name)
			return 2
		}
	}
	pem, err := os.ReadFile(*clientCA)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab-kubelet: %v\n", err)
		return 1
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "lab-kubelet: no certificate in %s\n", *clientCA)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/portForward/", onlyAPIServer(servePortForward(podNetns{dir: *podsDir})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	server := &http.Server{
		Addr:              *listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		// The streams are upgraded connections: the http.Server's own timeouts must not cut them.
		ErrorLog: log.New(os.Stderr, "lab-kubelet: ", log.LstdFlags),
	}
	if err := server.ListenAndServeTLS(*cert, *key); err != nil {
		fmt.Fprintf(os.Stderr, "lab-kubelet: %v\n", err)
		return 1
	}
	return 0
}
