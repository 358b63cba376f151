package main

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/dashboard"
)

// dashboardPrefix is where meterd serves the usage dashboard.
const dashboardPrefix = "/dashboard"

// withDashboard returns a handler that serves the usage dashboard of db
// under /dashboard/, guarded by the API's keys (open without keys, which
// meterd allows on loopback addresses only), and everything else with
// api, unchanged.
func withDashboard(api http.Handler, db *meterdb.DB, keys []string, log *slog.Logger) (http.Handler, error) {
	dash, err := dashboard.NewHandler(db, &dashboard.Options{APIKeys: keys, Logger: log})
	if err != nil {
		return nil, err
	}
	strip := http.StripPrefix(dashboardPrefix, dash)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == dashboardPrefix:
			w.Header().Set("Location", dashboardPrefix+"/")
			w.WriteHeader(http.StatusMovedPermanently)
		case strings.HasPrefix(p, dashboardPrefix+"/"):
			strip.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	}), nil
}
