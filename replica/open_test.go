package replica

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/sharedlog"
)

// TestOpenRefuses checks Open's validation of Options, of an existing
// stream, and of the connection.
func TestOpenRefuses(t *testing.T) {
	s := natstest.RunServer(t, nil)
	urls := []string{s.ClientURL()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range []Options{
		{},
		{URLs: urls, Stream: "a.b"},
		{URLs: urls, Replicas: 6},
		{URLs: urls, MaxAge: time.Minute, DuplicateWindow: time.Hour},
		{URLs: urls, DuplicateWindow: time.Second},
		{URLs: urls, AttemptTimeout: -1},
	} {
		if _, err := Open(ctx, o); !errors.Is(err, ErrOptions) {
			t.Errorf("Open(%+v): %v; want ErrOptions", o, err)
		}
	}

	js := rawJS(t, urls)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "SUBJ", Subjects: []string{"SUBJ.rec", "other"}},
		{Name: "WORK", Subjects: []string{"WORK.rec"}, Retention: jetstream.WorkQueuePolicy},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, Options{URLs: urls, Stream: cfg.Name, Replicas: 1}); !errors.Is(err, ErrStream) {
			t.Errorf("Open on stream %s: %v; want ErrStream", cfg.Name, err)
		}
	}

	if _, err := Open(ctx, Options{URLs: []string{"nats://127.0.0.1:1"}}); !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Errorf("Open without a server: %v; want ErrUnavailable", err)
	}
	if _, err := Open(ctx, Options{URLs: urls, Replicas: 1, CredsFile: filepath.Join(t.TempDir(), "missing.creds")}); err == nil {
		t.Error("Open with a missing credentials file succeeded")
	}
}

// TestRecordTooLarge checks that Append refuses a record the server would
// refuse, and takes one just under the limit.
func TestRecordTooLarge(t *testing.T) {
	s := natstest.RunServer(t, nil)
	l := openLog(t, []string{s.ClientURL()}, Options{Stream: "BIG", Replicas: 1})
	ctx := context.Background()
	max := int(l.nc.MaxPayload()) - headerRoom
	if _, err := l.Append(ctx, make([]byte, max+1)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Append of %d bytes: %v; want ErrRecordTooLarge", max+1, err)
	}
	if pos, err := l.Append(ctx, make([]byte, max)); err != nil || pos != 1 {
		t.Fatalf("Append of %d bytes: %d, %v", max, pos, err)
	}
}

// TestTLS runs a server that requires TLS: a Log with a tls:// URL and
// Options.TLS trusting the server's certificate appends and reads; one
// without it cannot connect.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s := natstest.RunServer(t, &natstest.ServerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	urls := []string{s.ClientURL()}
	if u := urls[0]; u[:6] != "tls://" {
		t.Fatalf("server URL %s", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Open(ctx, Options{URLs: urls, Replicas: 1}); err == nil || errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Open without the server's CA: %v; want an error that is not ErrUnavailable", err)
	}
	l := openLog(t, urls, Options{Replicas: 1, TLS: &tls.Config{RootCAs: pool}})
	if pos, err := l.Append(ctx, []byte("over tls")); err != nil || pos != 1 {
		t.Fatalf("Append over TLS: %d, %v", pos, err)
	}
	if got := readN(t, l, 0, 1); got[0] != (entry{1, "over tls"}) {
		t.Fatalf("read %v", got)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "natstest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool
}

// TestCreds runs a server in operator mode: a Log with Options.CredsFile
// appends and reads; one without credentials is refused, and that is not
// ErrUnavailable.
func TestCreds(t *testing.T) {
	s := natstest.RunServer(t, &natstest.ServerOptions{Creds: true})
	urls := []string{s.ClientURL()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Open(ctx, Options{URLs: urls, Replicas: 1}); err == nil || errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Open without credentials: %v; want an error that is not ErrUnavailable", err)
	}
	l := openLog(t, urls, Options{Replicas: 1, CredsFile: s.CredsFile()})
	if pos, err := l.Append(ctx, []byte("with creds")); err != nil || pos != 1 {
		t.Fatalf("Append with credentials: %d, %v", pos, err)
	}
	if got := readN(t, l, 0, 1); got[0] != (entry{1, "with creds"}) {
		t.Fatalf("read %v", got)
	}
}
