package natstest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Size is the number of nodes of a cluster.
const Size = 3

// ServerOptions configures RunServer; the zero value is a plain server.
type ServerOptions struct {
	// TLS, when set, makes the server require TLS on its client port with
	// this configuration; ClientURL then starts with tls://.
	TLS *tls.Config

	// Creds, when set, runs the server in operator mode (decentralized
	// JWT authentication) with one JetStream account; only a client with
	// the credentials file at Server.CredsFile connects.
	Creds bool
}

// Server is one in-process JetStream server.
type Server struct {
	t     testing.TB
	opts  *server.Options
	url   string
	creds string

	mu  sync.Mutex     // guards the field below
	srv *server.Server // nil while shut down
}

// RunServer starts one in-process JetStream server with its store under
// t.TempDir and stops it when the test ends.
func RunServer(t testing.TB, opts *ServerOptions) *Server {
	t.Helper()
	if opts == nil {
		opts = &ServerOptions{}
	}
	o := &server.Options{
		ServerName: "single",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	if opts.TLS != nil {
		o.TLS = true
		o.TLSConfig = opts.TLS
		o.TLSTimeout = 2
	}
	s := &Server{t: t, opts: o}
	if opts.Creds {
		var err error
		if s.creds, err = operatorMode(o, filepath.Join(t.TempDir(), "user.creds")); err != nil {
			t.Fatalf("natstest: operator mode: %v", err)
		}
	}
	if err := s.start(); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(s.Shutdown)
	// Restart listens on the same port.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port)
	if opts.TLS != nil {
		s.url = fmt.Sprintf("tls://127.0.0.1:%d", s.opts.Port)
	}
	return s
}

func (s *Server) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return errors.New("server not ready after 10s")
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// ClientURL returns the URL clients connect to.
func (s *Server) ClientURL() string { return s.url }

// CredsFile returns the path of a user's credentials file for a server
// started with ServerOptions.Creds, "" otherwise.
func (s *Server) CredsFile() string { return s.creds }

// operatorMode configures o to trust a new operator with a system
// account and one account with unlimited JetStream, and writes the
// credentials of a user of that account to creds.
func operatorMode(o *server.Options, creds string) (string, error) {
	okp, err := nkeys.CreateOperator()
	if err != nil {
		return "", err
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "natstest"
	ojwt, err := oc.Encode(okp)
	if err != nil {
		return "", err
	}
	if oc, err = jwt.DecodeOperatorClaims(ojwt); err != nil {
		return "", err
	}
	resolver := &server.MemAccResolver{}
	account := func(name string, js bool) (nkeys.KeyPair, string, error) {
		akp, err := nkeys.CreateAccount()
		if err != nil {
			return nil, "", err
		}
		apub, _ := akp.PublicKey()
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		if err != nil {
			return nil, "", err
		}
		return akp, apub, resolver.Store(apub, ajwt)
	}
	_, syspub, err := account("SYS", false)
	if err != nil {
		return "", err
	}
	akp, _, err := account("APP", true)
	if err != nil {
		return "", err
	}
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		return "", err
	}
	seed, _ := ukp.Seed()
	file, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(creds, file, 0o600); err != nil {
		return "", err
	}
	o.TrustedOperators = []*jwt.OperatorClaims{oc}
	o.SystemAccount = syspub
	o.AccountResolver = resolver
	return creds, nil
}

// Shutdown stops the server; it is safe to call more than once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts a shut down server again on the same port with the same
// store directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	up := s.srv != nil
	s.mu.Unlock()
	if up {
		return
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
}

// node is one member of a cluster: in-process or a separate process.
type node interface {
	start() error
	kill()
}

// Cluster is a three-node JetStream cluster on loopback ports.
type Cluster struct {
	t      testing.TB
	name   string
	ports  [Size]int // client ports
	routes [Size]int // cluster ports
	dirs   [Size]string

	mu    sync.Mutex // guards the fields below
	nodes [Size]node
	up    [Size]bool
}

// StartCluster starts three in-process JetStream servers that form one
// cluster, waits until it has a meta leader, and stops them when the
// test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, func(c *Cluster) error {
		for i := range Size {
			c.nodes[i] = &procNode{c: c, i: i}
		}
		return nil
	})
}

// StartProcessCluster starts three nats-server processes, built from the
// module's nats-server version, that form one cluster; it waits until
// the cluster has a meta leader and kills the processes when the test
// ends.
func StartProcessCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := buildServer()
	if err != nil {
		t.Fatalf("natstest: build nats-server: %v", err)
	}
	return startCluster(t, func(c *Cluster) error {
		for i := range Size {
			n := &execNode{c: c, i: i, bin: bin, conf: filepath.Join(c.dirs[i], "server.conf"), logf: filepath.Join(c.dirs[i], "server.log")}
			if err := os.WriteFile(n.conf, []byte(c.config(i)), 0o644); err != nil {
				return err
			}
			c.nodes[i] = n
		}
		return nil
	})
}

// startCluster starts a cluster of the nodes that nodes makes. The ports
// were free a moment before the servers bind them; when one was taken
// meanwhile, it tries again on other ports.
func startCluster(t testing.TB, nodes func(*Cluster) error) *Cluster {
	t.Helper()
	var err error
	for range 3 {
		c := newCluster(t)
		if err = nodes(c); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		if err = c.startAll(); err == nil {
			t.Cleanup(c.killAll)
			return c
		}
		c.killAll()
		t.Logf("natstest: the cluster did not start (%v); trying other ports", err)
	}
	t.Fatalf("natstest: %v", err)
	return nil
}

func newCluster(t testing.TB) *Cluster {
	c := &Cluster{t: t, name: "meterdb-test"}
	ports, err := freePorts(2 * Size)
	if err != nil {
		t.Fatalf("natstest: ports: %v", err)
	}
	for i := range Size {
		c.ports[i] = ports[2*i]
		c.routes[i] = ports[2*i+1]
		c.dirs[i] = t.TempDir()
	}
	return c
}

// startAll starts the nodes one after the other (a server is ready before
// its routes connect) and waits for a meta leader.
func (c *Cluster) startAll() error {
	for i := range Size {
		if err := c.startNode(i); err != nil {
			return err
		}
	}
	return c.WaitMetaLeader(30 * time.Second)
}

func (c *Cluster) killAll() {
	for i := range Size {
		c.Kill(i)
	}
}

func (c *Cluster) startNode(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up[i] {
		return nil
	}
	if err := c.nodes[i].start(); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	c.up[i] = true
	return nil
}

// ClientURLs returns the client URLs of the three nodes, whether they
// run or not.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, Size)
	for i := range Size {
		urls[i] = c.ClientURL(i)
	}
	return urls
}

// ClientURL returns the client URL of node i.
func (c *Cluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i])
}

// Name returns the server name of node i, as JetStream reports it in a
// stream's cluster information.
func (c *Cluster) Name(i int) string { return fmt.Sprintf("n%d", i) }

// Kill stops node i: a shutdown of an in-process node, SIGKILL of a
// process. Killing a stopped node does nothing.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up[i] {
		return
	}
	c.nodes[i].kill()
	c.up[i] = false
}

// Restart starts node i again with the same name, ports and store
// directory and waits until it accepts connections. Restarting a running
// node does nothing.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.startNode(i); err != nil {
		c.t.Fatalf("natstest: restart: %v", err)
	}
}

// WaitMetaLeader waits until the cluster's JetStream API answers, which
// needs a meta leader.
func (c *Cluster) WaitMetaLeader(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		last = c.tryAPI(ctx, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.AccountInfo(ctx)
			return err
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no JetStream meta leader after %v: %w", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StreamLeader returns the node that leads stream, waiting up to timeout
// for the stream to have a leader.
func (c *Cluster) StreamLeader(stream string, timeout time.Duration) (int, error) {
	var leader int
	err := c.waitStream(stream, timeout, func(si *jetstream.StreamInfo) bool {
		for i := range Size {
			if si.Cluster != nil && si.Cluster.Leader == c.Name(i) {
				leader = i
				return true
			}
		}
		return false
	})
	return leader, err
}

// WaitStreamCurrent waits until stream has a leader and all its replicas
// are current, so that the next node to die leaves a quorum that holds
// every stored message.
func (c *Cluster) WaitStreamCurrent(stream string, timeout time.Duration) error {
	return c.waitStream(stream, timeout, func(si *jetstream.StreamInfo) bool {
		if si.Cluster == nil || si.Cluster.Leader == "" || len(si.Cluster.Replicas) != si.Config.Replicas-1 {
			return false
		}
		for _, r := range si.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) waitStream(stream string, timeout time.Duration, ok func(*jetstream.StreamInfo) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		last = c.tryAPI(ctx, func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			if !ok(s.CachedInfo()) {
				return errors.New("stream not in the wanted state")
			}
			return nil
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s: %w", stream, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tryAPI runs f on a fresh connection to the running nodes.
func (c *Cluster) tryAPI(ctx context.Context, f func(context.Context, jetstream.JetStream) error) error {
	var urls []string
	c.mu.Lock()
	for i := range Size {
		if c.up[i] {
			urls = append(urls, c.ClientURL(i))
		}
	}
	c.mu.Unlock()
	if len(urls) == 0 {
		return errors.New("no node runs")
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return f(actx, js)
}

func (c *Cluster) routeURLs() []*url.URL {
	var us []*url.URL
	for i := range Size {
		us = append(us, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.routes[i]))})
	}
	return us
}

// config returns the configuration file of process node i.
func (c *Cluster) config(i int) string {
	var routes []string
	for _, u := range c.routeURLs() {
		routes = append(routes, strconv.Quote(u.String()))
	}
	return fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
jetstream {
  store_dir: %q
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, c.Name(i), c.ports[i], filepath.Join(c.dirs[i], "js"), c.name, c.routes[i], strings.Join(routes, ", "))
}

// procNode is an in-process cluster node.
type procNode struct {
	c   *Cluster
	i   int
	srv *server.Server
}

func (n *procNode) start() error {
	c := n.c
	o := &server.Options{
		ServerName: c.Name(n.i),
		Host:       "127.0.0.1",
		Port:       c.ports[n.i],
		JetStream:  true,
		StoreDir:   filepath.Join(c.dirs[n.i], "js"),
		NoLog:      true,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: c.routes[n.i],
		},
		Routes: c.routeURLs(),
	}
	s, err := server.NewServer(o)
	if err != nil {
		return err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("not ready after 10s")
	}
	n.srv = s
	return nil
}

func (n *procNode) kill() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// execNode is a nats-server process.
type execNode struct {
	c    *Cluster
	i    int
	bin  string
	conf string
	logf string
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *execNode) start() error {
	logf, err := os.OpenFile(n.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.c.ports[n.i]))
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-done:
			return fmt.Errorf("nats-server exited; see %s", n.logf)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("nats-server not listening after 15s; see %s", n.logf)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.cmd, n.done = cmd, done
	return nil
}

func (n *execNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// Pid returns the process id of process node i, 0 when it does not run
// or is in-process.
func (c *Cluster) Pid(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.nodes[i].(*execNode); ok && c.up[i] {
		return n.cmd.Process.Pid
	}
	return 0
}

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildServer builds nats-server from the module's required version, once
// per test binary.
func buildServer() (string, error) {
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "natstest-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", build.bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("%w: %s", err, out)
		}
	})
	return build.bin, build.err
}

// Cleanup removes the nats-server binary built for process clusters;
// call it from TestMain after m.Run.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// freePorts returns n loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
