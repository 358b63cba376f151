package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/metrics"
)

// defaultMetricsAddr is where -metrics-addr listens unless told otherwise:
// 9464 is the port Prometheus exporters conventionally use.
const defaultMetricsAddr = "127.0.0.1:9464"

// withHealth answers the load balancer probes in front of the API, without
// authentication: /healthz is 200 while the process serves, /readyz is 200
// while the database can record and 503 with the reason otherwise. Every
// other path goes to next.
func withHealth(db *meterdb.DB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == "/readyz" {
			if err := db.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
}

// serveMetrics serves /metrics on addr, on a listener and mux of its own:
// the Go runtime and process collectors, and the collector of db and the
// API handler h. An empty addr serves nothing. When the default address is
// taken (another meterd on the machine) it logs a warning and serves
// nothing; an address given with -metrics-addr must be free. The returned
// function stops the server.
func serveMetrics(addr string, explicit bool, db *meterdb.DB, h http.Handler, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewCollector(db, &metrics.Options{Handler: h}),
	)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if !explicit {
			log.Warn("not serving metrics: the default address is taken; set -metrics-addr, or -metrics-addr= to disable",
				"addr", addr, "err", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving metrics", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return func() { srv.Close() }, nil
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
