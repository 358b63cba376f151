package dashboard

import (
	"errors"
	"net/http"
	"strings"

	"github.com/meterdb/meterdb/stripeapi"
)

// loginPage is the data of the login form.
type loginPage struct {
	layout
	CSRF string
	Next string
}

// safeNext returns next when it is a path inside the dashboard, "/" otherwise.
func safeNext(next string) string {
	if len(next) > maxNextLen || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}

// serveLoginForm shows the login form, with a fresh login cookie whose
// nonce the form's CSRF token is tied to.
func (h *handler) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if len(h.opts.APIKeys) == 0 {
		redirect(w, r, next[1:])
		return
	}
	h.showLogin(w, r, http.StatusOK, next, "")
}

func (h *handler) showLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	nonce := newNonce()
	h.setCookie(w, r, loginCookie, nonce, int(loginTTL.Seconds()))
	raw, _ := b64.DecodeString(nonce)
	l := h.layout(r, "Log in")
	l.Error = msg
	h.render(w, r, status, "login", loginPage{layout: l, CSRF: h.sess.csrf("login", raw), Next: next})
}

// serveLogin checks the login form: its CSRF token against the login
// cookie, then the key. A good key gets a session cookie and a redirect to
// the page that asked for the login.
func (h *handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	if len(h.opts.APIKeys) == 0 {
		redirect(w, r, "")
		return
	}
	if !h.parseForm(w, r) {
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	c, err := r.Cookie(loginCookie)
	var nonce []byte
	if err == nil {
		nonce, _ = b64.DecodeString(c.Value)
	}
	if !h.sess.checkCSRF("login", nonce, r.PostForm.Get("csrf")) {
		h.fail(w, r, http.StatusForbidden, "The form expired or did not come from this dashboard; reload the login page.")
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	if len(key) > maxKeyLength || !stripeapi.MatchKey(h.opts.APIKeys, key) {
		h.showLogin(w, r, http.StatusUnauthorized, next, "That is not one of the server's API keys.")
		return
	}
	token, exp := h.sess.issue(h.opts.Now())
	h.setCookie(w, r, loginCookie, "", -1)
	h.setCookie(w, r, sessionCookie, token, int(exp.Sub(h.opts.Now()).Seconds()))
	redirect(w, r, next[1:])
}

// serveLogout ends the session of a logout form with a valid CSRF token.
func (h *handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if v.access != accessSession {
		redirect(w, r, "")
		return
	}
	if !h.parseForm(w, r) {
		return
	}
	if !h.sess.checkCSRF("logout", v.nonce, r.PostForm.Get("csrf")) {
		h.fail(w, r, http.StatusForbidden, "The form did not come from this dashboard.")
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.sess.revoke(c.Value, h.opts.Now())
	}
	h.setCookie(w, r, sessionCookie, "", -1)
	redirect(w, r, "login")
}

// parseForm reads a bounded urlencoded body, or renders the error.
func (h *handler) parseForm(w http.ResponseWriter, r *http.Request) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		h.fail(w, r, http.StatusUnsupportedMediaType, "Send the form as application/x-www-form-urlencoded.")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		h.fail(w, r, status, "The form could not be read.")
		return false
	}
	if len(r.PostForm) > 8 {
		h.fail(w, r, http.StatusBadRequest, "The form has too many fields.")
		return false
	}
	return true
}
