package dashboard

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// Limits on what a request may carry.
const (
	maxFormBytes   = 4 << 10 // a login or logout form body
	maxKeyLength   = 255     // an API key typed into the login form
	maxCustomerLen = 256     // a customer id in a path or cursor
	maxMeterIDLen  = 64      // a meter id in a path
	maxNextLen     = 512     // the page to return to after login
)

// handler serves the dashboard of one DB. It is safe for concurrent use.
type handler struct {
	db    *meterdb.DB
	opts  Options
	sess  *sessions
	mux   *http.ServeMux
	pages map[string]*template.Template
	rate  *rateSampler
}

// NewHandler returns an http.Handler serving the usage dashboard of db:
// an overview of every meter, a page per meter and a page per customer,
// rendered on the server as HTML with inline SVG charts. Mount it at "/"
// or, under a prefix, with http.StripPrefix; links and cookies follow the
// prefix:
//
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h))
//
// With Options.APIKeys the pages ask for one of the keys in a login form,
// which sets a signed session cookie; scripts may send a key as Bearer or
// Basic credentials instead. Without keys the dashboard is open.
//
// The handler does not own db: closing db is the caller's job, after the
// server stopped sending requests to the handler. opts may be nil; the
// handler keeps a copy.
func NewHandler(db *meterdb.DB, opts *Options) (http.Handler, error) {
	if db == nil {
		return nil, errors.New("dashboard: NewHandler with a nil DB")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	h := &handler{db: db, opts: o, sess: newSessions(o.SessionKey, o.SessionTTL), pages: pages, rate: &rateSampler{}}
	assets, _ := fs.Sub(embedded, "assets")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.serveOverview)
	mux.HandleFunc("GET /meters/{id}", h.serveMeter)
	mux.HandleFunc("GET /customers/{customer}", h.serveCustomer)
	mux.HandleFunc("GET /login", h.serveLoginForm)
	mux.HandleFunc("POST /login", h.serveLogin)
	mux.HandleFunc("POST /logout", h.serveLogout)
	mux.Handle("GET /assets/", http.StripPrefix("/assets", cacheAssets(http.FileServerFS(assets))))
	h.mux = mux
	return h, nil
}

type ctxKey struct{}

// viewer is who is looking at a page.
type viewer struct {
	access access
	nonce  []byte // the session's, with accessSession
}

// ServeHTTP authenticates the request, except for the login form and the
// static assets, and routes it.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	path := r.URL.Path
	if path == "/login" || strings.HasPrefix(path, "/assets/") {
		h.mux.ServeHTTP(w, r)
		return
	}
	acc, nonce := h.authorize(r)
	if acc == accessDenied {
		switch {
		case r.Header.Get("Authorization") != "":
			hd.Set("WWW-Authenticate", `Basic realm="meterdb dashboard"`)
			h.fail(w, r, http.StatusUnauthorized, "Invalid API key.")
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			next := r.URL.EscapedPath()
			if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			if len(next) > maxNextLen {
				next = "/"
			}
			redirect(w, r, "login?next="+url.QueryEscape(next))
		default:
			h.fail(w, r, http.StatusForbidden, "Log in first.")
		}
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, viewer{acc, nonce})))
}

func viewerOf(r *http.Request) viewer {
	v, _ := r.Context().Value(ctxKey{}).(viewer)
	return v
}

// base returns the relative reference from r's page to the dashboard's
// root ("./" or a run of "../"), so that links work under any prefix.
func base(r *http.Request) string {
	depth := strings.Count(r.URL.EscapedPath(), "/") - 1
	if depth <= 0 {
		return "./"
	}
	return strings.Repeat("../", depth)
}

// redirect sends a 303 to ref, relative to the dashboard's root. The
// Location stays relative: http.Redirect would resolve it against the
// path after http.StripPrefix removed the mount prefix.
func redirect(w http.ResponseWriter, r *http.Request, ref string) {
	w.Header().Set("Location", base(r)+ref)
	w.WriteHeader(http.StatusSeeOther)
}

func cacheAssets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// layout is what every page's frame shows.
type layout struct {
	Title   string
	Base    string // relative reference to the dashboard's root
	Logout  string // CSRF token of the logout form; "" hides the form
	Refresh int    // seconds between reloads; 0 for none
	Now     time.Time
	Error   string
}

func (h *handler) layout(r *http.Request, title string) layout {
	l := layout{Title: title, Base: base(r), Now: h.opts.Now().UTC()}
	if v := viewerOf(r); v.access == accessSession {
		l.Logout = h.sess.csrf("logout", v.nonce)
	}
	return l
}

// render executes page into a buffer first, so that a failure yields a
// clean error page rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "dashboard: rendering",
			slog.String("page", page), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// fail renders an error page.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	l := h.layout(r, http.StatusText(status))
	l.Error = msg
	h.render(w, r, status, "error", struct{ layout }{l})
}

// internal logs err and renders a 500 page.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "dashboard: page failed",
		slog.String("path", r.URL.Path), slog.Any("error", err))
	h.fail(w, r, http.StatusInternalServerError, "The page could not be built; the server log has the cause.")
}

// lookupMeter returns the meter with the given id, or renders a 404.
func (h *handler) lookupMeter(w http.ResponseWriter, r *http.Request, id string) (meter.Meter, bool) {
	if len(id) > maxMeterIDLen {
		h.fail(w, r, http.StatusNotFound, "No such meter.")
		return meter.Meter{}, false
	}
	m, err := h.db.Meter(r.Context(), id)
	switch {
	case errors.Is(err, meter.ErrNotFound):
		h.fail(w, r, http.StatusNotFound, "No such meter.")
		return m, false
	case err != nil:
		h.internal(w, r, err)
		return m, false
	}
	return m, true
}
