// Command meterd serves the Stripe Billing Meters API (v1, and v2 with
// meter event sessions and the meter event stream) from a meterdb database
// file, so that stripe-go, other Stripe SDKs and curl can record and query
// usage against it.
//
// Usage:
//
//	meterd [-addr 127.0.0.1:12111] [-db meterdb.db] [-api-key sk_test_…[,sk_live_…]] [-durability sync|buffered] [-procs N] [-max-concurrent 256]
//	       [-max-conns 4096] [-idle-timeout 30s] [-tls-cert FILE -tls-key FILE] [-insecure-http] [-metrics-addr 127.0.0.1:9464] [-dashboard=true]
//	       [-nats URL[,URL…] [-nats-creds FILE] [-nats-stream METERDB] [-nats-replicas 3] [-consistent-reads]]
//	meterd backup -db FILE -out FILE [-url URL [-api-key KEY]]
//	meterd verify -db FILE
//	meterd export -meter ID|EVENT_NAME -from T -to T [-grouping hour|day|none] [-format csv|ndjson] [-db FILE] [-url URL -api-key KEY]
//
// The API keys can also come from METERD_API_KEY (comma-separated); the
// flag wins. Without a key meterd accepts any key starting with sk_test_,
// and only on a loopback address: it refuses to listen anywhere else
// without one. Beyond loopback it also refuses keys shorter than 16
// characters, and plain HTTP unless -insecure-http is given: serve HTTPS
// with -tls-cert and -tls-key. -max-conns caps the open connections (see
// server.go for the timeouts). The few answers net/http makes itself, to
// requests it cannot parse, get Stripe JSON bodies (over plain HTTP). An
// empty -db keeps everything in memory, lost on exit.
// -durability buffered acknowledges events before their fsync (see
// meterdb.DurabilityBuffered: a crash may lose the last 100 ms or so of
// acknowledged events, never count one twice); the default, sync,
// acknowledges after it.
//
// With a file and sync durability every commit waits for fsyncs. When all
// processors are busy serving requests, the goroutine that committed waits
// for one after each fsync, and so does every writer of the next commit.
// meterd then runs twice the runtime's default number of processors for Go
// code (GOMAXPROCS), so that it finds one at once. On two cores that gave
// more requests per second in 11 of 13 alternated runs of v1 and stream
// requests, 16 % more at the median (bench/BENCHMARKS.md). -procs sets the
// number, and a GOMAXPROCS environment variable wins over the default.
//
// The usage dashboard (package dashboard) is served at /dashboard/: it asks
// for one of the API keys in a login form, and is open without keys, like
// the API on a loopback address. -dashboard=false turns it off.
//
// Prometheus metrics are served at /metrics on -metrics-addr, a listener of
// their own (empty disables; see package metrics for the names). The API
// listener also answers /healthz (200 while the process serves) and
// /readyz (200 while the database can record, else 503), without
// authentication.
//
// meterd backup writes a consistent copy of a database file and verifies
// it: from the file itself when no server has it open, or, with -url, from
// the running meterd at that URL, which serves a hot copy of its database
// at GET /v1/meterdb/backup to its API keys. meterd verify checks a file
// (see meterdb.Verify) and exits 1 when it finds a problem.
//
// meterd export writes per-customer usage of a meter as CSV or NDJSON (see
// package export): from a file no process holds, opened read-only, or
// through the /v1/meterdb/export endpoint that a running meterd serves
// behind its API keys. Bad flags exit with status 2.
//
// -nats makes this meterd one replica of a database shared through a NATS
// JetStream stream (package replica): every meterd started with the same
// -nats cluster and -nats-stream serves the same database, and any of them
// accepts any API call. The stream (default METERDB) is created if missing
// with -nats-replicas copies (default 3); nats:// and tls:// URLs and a
// credentials file (-nats-creds) are passed to the NATS client. -db is
// then this replica's local state, a restart reads the stream on from it,
// and an empty -db bootstraps from the stream's newest snapshot. A replica
// sees its own writes at once and others' as it applies them;
// -consistent-reads makes each read wait until it applied the stream's
// last record as of the read's start. While the stream cannot be reached,
// writes fail with a retryable error and reads answer from memory.
//
// On SIGINT or SIGTERM meterd stops accepting connections, waits for the
// requests in flight (up to 30 seconds), and closes the database, so
// everything it acknowledged is on disk when it exits. A panic while
// serving a request exits with status 2 and the stack in the log, the
// database left as its log made it (see exitOnPanic).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/replica"
	"github.com/meterdb/meterdb/stripeapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backup":
			os.Exit(backupMain(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		case "verify":
			os.Exit(verifyMain(os.Args[2:], os.Stdout, os.Stderr))
		case "export":
			os.Exit(runExport(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		}
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "meterd:", err)
		os.Exit(1)
	}
}

// setProcs is runtime.GOMAXPROCS; tests replace it.
var setProcs = runtime.GOMAXPROCS

// procsFor returns the GOMAXPROCS to set for the -procs flag (0: the
// default), or 0 to leave the runtime's: a GOMAXPROCS environment
// variable wins over the default, which doubles the runtime's processors
// when every commit waits for an fsync (syncFile).
func procsFor(flag int, envSet, syncFile bool) int {
	switch {
	case flag > 0:
		return flag
	case envSet || !syncFile:
		return 0
	}
	return 2 * setProcs(0)
}

// shutdownTimeout bounds the wait for requests in flight at shutdown.
const shutdownTimeout = 30 * time.Second

// run is meterd without the process: it serves until ctx is done, then
// shuts down cleanly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("meterd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:12111", "listen `address` (host:port)")
	dbPath := fs.String("db", "meterdb.db", "database `file`; empty keeps everything in memory")
	keyFlag := fs.String("api-key", "", "accepted API `keys`, comma-separated (default $METERD_API_KEY); "+
		"without any, every sk_test_ key is accepted, on loopback addresses only")
	maxConcurrent := fs.Int("max-concurrent", 256, "requests served at once; more wait up to a second for a slot, then get 429")
	sf := addServerFlags(fs)
	durability := fs.String("durability", "sync", "`sync` acknowledges events after their fsync; buffered acknowledges at once and syncs within 100 ms")
	procs := fs.Int("procs", 0, "processors running Go code (GOMAXPROCS); 0: the runtime's default, doubled for a file with sync durability")
	dash := fs.Bool("dashboard", true, "serve the usage dashboard at /dashboard/, guarded by the API keys")
	metricsAddr := fs.String("metrics-addr", defaultMetricsAddr, "serve Prometheus metrics at /metrics on this `address`; empty disables")
	natsURLs := fs.String("nats", "", "NATS server `URLs`, comma-separated (nats:// or tls://): this meterd is then one replica of a database "+
		"shared through a JetStream stream with every meterd given the same -nats and -nats-stream, and -db is its local file")
	natsCreds := fs.String("nats-creds", "", "NATS credentials `file` (with -nats)")
	natsStream := fs.String("nats-stream", "METERDB", "JetStream `stream` holding the shared log (with -nats); created if missing")
	natsReplicas := fs.Int("nats-replicas", 3, "servers storing the stream when meterd creates it (with -nats)")
	consistent := fs.Bool("consistent-reads", false, "with -nats: every read first waits until this replica applied the stream's last record, "+
		"so it sees every write any replica acknowledged before it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *natsURLs == "" {
		for _, f := range []string{"nats-creds", "nats-stream", "nats-replicas", "consistent-reads"} {
			if isSet(fs, f) {
				return fmt.Errorf("-%s needs -nats", f)
			}
		}
	}
	opts := &meterdb.Options{}
	switch *durability {
	case "sync":
	case "buffered":
		opts.Durability = meterdb.DurabilityBuffered
	default:
		return fmt.Errorf("-durability must be sync or buffered, not %q", *durability)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *procs < 0 {
		return fmt.Errorf("-procs must be at least 0, not %d", *procs)
	}
	if *maxConcurrent < 1 {
		return fmt.Errorf("-max-concurrent must be at least 1, not %d", *maxConcurrent)
	}
	keys := parseKeys(*keyFlag)
	if keys == nil {
		keys = parseKeys(getenv("METERD_API_KEY"))
	}
	if len(keys) == 0 && !loopback(*addr) {
		return fmt.Errorf("refusing to listen on %s without an API key: set -api-key or METERD_API_KEY, "+
			"or listen on a loopback address such as 127.0.0.1", *addr)
	}
	if err := checkServer(sf, *addr, keys); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts.Logger = log
	n := procsFor(*procs, getenv("GOMAXPROCS") != "", *dbPath != "" && *natsURLs == "" && opts.Durability == meterdb.DurabilitySync)
	if n > 0 && n != setProcs(0) {
		setProcs(n)
		log.Info("processors for Go code", "gomaxprocs", n)
	}
	var shared *replica.Log
	if *natsURLs != "" {
		var err error
		shared, err = replica.Open(ctx, replica.Options{URLs: parseKeys(*natsURLs), CredsFile: *natsCreds,
			Stream: *natsStream, Replicas: *natsReplicas, Name: "meterd", Logger: log})
		if err != nil {
			return fmt.Errorf("opening the shared log: %w", err)
		}
		defer shared.Close() // after the database's Close below
		opts.Log = shared
		opts.ConsistentReads = *consistent
	}
	db, err := meterdb.Open(*dbPath, opts)
	if err != nil {
		return fmt.Errorf("opening database %q: %w", *dbPath, err)
	}
	h, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: keys, Logger: log, MaxConcurrentRequests: *maxConcurrent})
	api := h // the stripeapi handler, whose statistics /metrics exports
	if err == nil {
		h, err = withExport(h, db, keys)
	}
	if err == nil && *dash {
		h, err = withDashboard(h, db, keys, log)
	}
	if err != nil {
		db.Close()
		return err
	}
	h = withBackup(h, db, keys, log)
	ln, err := listen(sf, *addr, log)
	if err != nil {
		db.Close()
		return err
	}
	srv := newServer(exitOnPanic(withHealth(db, h), log, os.Exit), sf, log)
	stopMetrics, err := serveMetrics(*metricsAddr, isSet(fs, "metrics-addr"), db, api, log)
	if err != nil {
		ln.Close()
		db.Close()
		return err
	}
	defer stopMetrics()
	auth := "configured API keys"
	if len(keys) == 0 {
		auth = "any sk_test_ key (no API key configured)"
	}
	scheme := "http"
	if sf.tlsCert != "" {
		scheme = "https"
	}
	log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "db", *dbPath, "auth", auth)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return errors.Join(err, db.Close())
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Shutdown returns once every request in flight has been answered (or
	// the timeout passed); Close then waits for any engine operation still
	// running and makes everything acknowledged durable.
	err = srv.Shutdown(sctx)
	if cerr := db.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("closing database: %w", cerr))
	}
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// parseKeys splits a comma-separated key list; it returns nil for none.
func parseKeys(s string) []string {
	var keys []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
