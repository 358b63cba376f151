package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// chromium returns the path of the Chromium binary, or "" when there is
// none: then the browser tests skip, except under CI=true, where they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium not found and CI=true: the browser tests must run in CI (apt-get install -y chromium)")
	}
	t.Skip("Chromium not found (apt-get install -y chromium); skipping the browser tests")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and returns the
// context of its first tab. The browser ends with the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// watch records what a tab requests and what it reports as a problem.
type watch struct {
	origin string
	mu     sync.Mutex // guards the fields below
	urls   []string
	errs   []string // console errors, exceptions, error-level log entries
}

// newTab opens a tab of the browser of ctx and watches it.
func newTab(t *testing.T, ctx context.Context, origin string) (context.Context, *watch) {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	w := &watch{origin: origin}
	err := chromedp.Listen(tab, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			w.urls = append(w.urls, ev.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				w.errs = append(w.errs, fmt.Sprintf("console.%s", ev.Type))
			}
		case *runtime.EventExceptionThrown:
			w.errs = append(w.errs, "exception: "+ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				w.errs = append(w.errs, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab, w
}

// check fails the test for any request off the test server's origin and for
// any problem the page reported, except those matching allowed, and then
// forgets them. It returns the number of requests seen.
func (w *watch) check(t *testing.T, page string, allowed ...string) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range w.urls {
		if !strings.HasPrefix(u, w.origin+"/") {
			t.Errorf("%s: request to %s, off the server's origin %s", page, u, w.origin)
		}
	}
next:
	for _, e := range w.errs {
		for _, a := range allowed {
			if strings.Contains(e, a) {
				continue next
			}
		}
		t.Errorf("%s: the page reported %s", page, e)
	}
	n := len(w.urls)
	w.urls, w.errs = nil, nil
	return n
}

// screenshot saves the page as <name>.png in $DASHBOARD_SCREENSHOTS, or in
// a temporary directory of the test.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("DASHBOARD_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// point is a window as a page shows it (a chart bar or a table row) or as
// the engine gives it.
type point struct {
	Start, End int64
	Value      string
	Count      int64
	Text       string // a table cell's text, "" for chart bars and engine windows
	Customer   string
}

// pageData is what extractJS reads from a page.
type pageData struct {
	Charts []struct {
		Meter, ID  string
		Start, End int64
		Points     []point
	}
	Tables []struct {
		Meter, ID  string
		Start, End int64
		Points     []point
	}
	Meters []struct {
		Meter    string
		Accepted string
		Cells    []point
	}
	Reports []point
	Totals  []struct { // a customer page's 30-day total per meter
		Meter string
		Total point
	}
	Accepted   string
	Durability string
	Customers  []string // hrefs of the customer links
	Rate       string
}

const extractJS = `(() => {
	const q = (s, r) => Array.from((r || document).querySelectorAll(s));
	const meterOf = e => { const m = e.closest('[data-meter]'); return m ? m.dataset.meter : ''; };
	const cell = e => ({start: +(e.dataset.windowStart || 0), end: +(e.dataset.windowEnd || 0),
		value: e.dataset.value, count: +(e.dataset.count || 0), text: e.textContent});
	const row = tr => {
		const v = tr.querySelector('[data-value]'), c = tr.querySelector('[data-count]');
		return {start: +(tr.dataset.windowStart || 0), end: +(tr.dataset.windowEnd || 0), customer: tr.dataset.customer || '',
			value: v ? v.dataset.value : '', text: v ? v.textContent : '', count: c ? +c.dataset.count : 0};
	};
	const acc = document.querySelector('#accepted');
	const rate = document.querySelector('[data-rate]');
	return {
		charts: q('[data-chart]').map(s => ({meter: meterOf(s), id: s.dataset.chart,
			start: +s.dataset.windowStart, end: +s.dataset.windowEnd,
			points: q('rect.bar', s).map(r => ({start: +r.dataset.windowStart, end: +r.dataset.windowEnd,
				value: r.dataset.value, count: +r.dataset.count}))})),
		tables: q('table[data-table]').map(t => ({meter: meterOf(t), id: t.dataset.table,
			start: +(t.dataset.windowStart || 0), end: +(t.dataset.windowEnd || 0),
			points: q('tbody tr', t).filter(tr => tr.querySelector('[data-value]')).map(row)})),
		meters: q('tr[data-meter]').map(tr => ({meter: tr.dataset.meter,
			accepted: tr.querySelector('[data-accepted]').dataset.accepted, cells: q('td[data-period]', tr).map(cell)})),
		reports: q('tr[data-report]').map(row),
		totals: q('section.usage').map(s => ({meter: s.dataset.meter, total: cell(s.querySelector('strong[data-value]'))})),
		accepted: acc ? acc.dataset.value : '',
		durability: (document.querySelector('[data-durability]') || {dataset: {}}).dataset.durability || '',
		customers: q('a[href*="customers/"]').map(a => a.href),
		rate: rate ? rate.dataset.rate : '',
	};
})()`

// load navigates to url and reads the page.
func load(t *testing.T, ctx context.Context, url string) pageData {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	if resp.Status != 200 {
		t.Fatalf("loading %s: status %d", url, resp.Status)
	}
	return read(t, ctx)
}

func read(t *testing.T, ctx context.Context) pageData {
	t.Helper()
	d, err := chromedp.Run(ctx, chromedp.Evaluate[pageData](extractJS))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return d
}

// points converts engine summaries to points, in their order.
func points(s []meterdb.Summary) []point {
	out := make([]point, len(s))
	for i, x := range s {
		out[i] = point{Start: x.Start.Unix(), End: x.End.Unix(), Value: x.Value.String(), Count: x.Count}
	}
	return out
}

// samePoints compares what a page shows with what the engine gives. Table
// rows keep the engine's order and show the exact value as text; chart
// bars may come in any order.
func samePoints(t *testing.T, what string, got, want []point, table bool) {
	t.Helper()
	if !table {
		got = slices.Clone(got)
		slices.SortFunc(got, func(a, b point) int { return int(b.Start - a.Start) }) // newest first, as the engine
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d points on the page, the engine has %d windows with usage", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if table && g.Text != g.Value {
			t.Errorf("%s[%d]: the cell shows %q, its data-value is %q", what, i, g.Text, g.Value)
		}
		g.Text = ""
		if g != w {
			t.Errorf("%s[%d]: page %+v, engine %+v", what, i, g, w)
		}
	}
}

// Ranges of the pages at t0, computed here independently of the package.
var (
	hourEnd   = t0.Truncate(time.Hour).Add(time.Hour)
	hourStart = hourEnd.Add(-48 * time.Hour)
	dayEnd    = time.Date(t0.Year(), t0.Month(), t0.Day()+1, 0, 0, 0, 0, time.UTC)
	dayStart  = dayEnd.AddDate(0, 0, -35)
	periods   = [][2]time.Time{{dayEnd.AddDate(0, 0, -1), dayEnd}, {dayEnd.AddDate(0, 0, -7), dayEnd}, {dayEnd.AddDate(0, 0, -30), dayEnd}}
)

// TestBrowser drives the dashboard in headless Chromium against a server
// with known data. The pages subtest loads every page and checks that each number on the
// page is the engine's (Totals, TopCustomers, Customers, Summaries), that
// each chart has one point per window with usage, and that the pages
// request nothing off the server's origin and report no error. The login
// subtest checks the redirect to the login form when a key is configured,
// the form's CSRF token and the session cookie.
func TestBrowser(t *testing.T) {
	ctx := newBrowser(t)
	t.Run("pages", func(t *testing.T) { testPages(t, ctx) })
	t.Run("login", func(t *testing.T) { testBrowserLogin(t, ctx) })
}

func testPages(t *testing.T, ctx context.Context) {
	e := newEnv(t)
	tab, w := newTab(t, ctx, e.srv.URL)
	bg := context.Background()
	ms, _, err := e.db.ListMeters(bg, meter.ListParams{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}

	// The overview.
	d := load(t, tab, e.dashURL())
	if len(d.Meters) != len(ms) {
		t.Fatalf("overview: %d meter rows, want %d", len(d.Meters), len(ms))
	}
	for _, row := range d.Meters {
		var want []point
		for _, p := range periods {
			s, err := e.db.Totals(bg, meterdb.TotalsParams{Meter: row.Meter, Start: p[0], End: p[1]})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, points(s)...)
		}
		samePoints(t, "overview "+row.Meter, row.Cells, want, true)
	}
	reports, _, err := stripeapi.ListErrorReports(bg, e.db, stripeapi.ErrorReportListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || len(d.Reports) != len(reports) {
		t.Errorf("overview: %d error reports shown, the store has %d (want 2)", len(d.Reports), len(reports))
	}
	for i := range min(len(reports), len(d.Reports)) {
		if want := fmt.Sprint(reports[i].ErrorCount); d.Reports[i].Value != want || d.Reports[i].Text != want {
			t.Errorf("overview: report %d shows %q errors, want %s", i, d.Reports[i].Text, want)
		}
	}
	st := e.db.Stats()
	if want := fmt.Sprint(st.EventsAccepted); d.Accepted != want {
		t.Errorf("overview: %s events accepted shown, Stats has %s", d.Accepted, want)
	}
	if d.Durability != "sync" {
		t.Errorf("overview: durability %q, want sync", d.Durability)
	}
	for _, row := range d.Meters {
		for _, ms := range st.ByMeter {
			if ms.ID == row.Meter && fmt.Sprint(ms.Accepted) != row.Accepted {
				t.Errorf("overview: meter %s shows %s events accepted, Stats has %d", row.Meter, row.Accepted, ms.Accepted)
			}
		}
	}
	w.check(t, "overview")
	screenshot(t, tab, "overview")

	// A page per meter.
	customerLinks := map[string]bool{}
	for _, m := range ms {
		d := load(t, tab, e.dashURL()+"meters/"+m.ID)
		if len(d.Charts) != 2 {
			t.Fatalf("meter %s: %d charts, want 2", m.EventName, len(d.Charts))
		}
		ranges := map[string][3]any{"hourly": {hourStart, hourEnd, meterdb.GroupHour}, "daily": {dayStart, dayEnd, meterdb.GroupDay}}
		engine := map[string][]point{}
		for id, r := range ranges {
			s, err := e.db.Totals(bg, meterdb.TotalsParams{Meter: m.ID, Start: r[0].(time.Time), End: r[1].(time.Time), Grouping: r[2].(meterdb.Grouping)})
			if err != nil {
				t.Fatal(err)
			}
			engine[id] = points(s)
		}
		for _, c := range d.Charts {
			r := ranges[c.ID]
			if c.Start != r[0].(time.Time).Unix() || c.End != r[1].(time.Time).Unix() {
				t.Errorf("meter %s: chart %s spans [%d, %d)", m.EventName, c.ID, c.Start, c.End)
			}
			samePoints(t, "meter "+m.EventName+" chart "+c.ID, c.Points, engine[c.ID], false)
		}
		top, err := e.db.TopCustomers(bg, meterdb.TopParams{Meter: m.ID, Start: periods[2][0], End: periods[2][1], N: 10})
		if err != nil {
			t.Fatal(err)
		}
		cus, _, err := e.db.Customers(bg, meterdb.CustomersParams{Meter: m.ID, Start: periods[2][0], End: periods[2][1], Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		usage := func(us []meterdb.CustomerUsage) []point {
			out := make([]point, len(us))
			for i, u := range us {
				out[i] = point{Customer: u.Customer, Value: u.Value.String(), Count: u.Count}
			}
			return out
		}
		tables := 0
		for _, tb := range d.Tables {
			switch tb.ID {
			case "hourly", "daily":
				samePoints(t, "meter "+m.EventName+" table "+tb.ID, tb.Points, engine[tb.ID], true)
			case "top":
				samePoints(t, "meter "+m.EventName+" top customers", tb.Points, usage(top), true)
			case "customers":
				samePoints(t, "meter "+m.EventName+" customers", tb.Points, usage(cus), true)
			default:
				continue
			}
			tables++
		}
		if tables != 4 {
			t.Errorf("meter %s: %d tables, want 4", m.EventName, tables)
		}
		if len(top) == 0 && m.Status == meter.Active {
			t.Errorf("meter %s: no top customers in the test data", m.EventName)
		}
		for _, href := range d.Customers {
			customerLinks[href] = true
		}
		w.check(t, "meter "+m.EventName)
		if m.EventName == "api_calls" {
			screenshot(t, tab, "meter")
		}
	}

	// A page per customer, reached through the meter pages' links.
	if len(customerLinks) != len(e.customers) {
		t.Errorf("the meter pages link %d customer pages, want %d: %v", len(customerLinks), len(e.customers), customerLinks)
	}
	seen := map[string]bool{}
	for href := range customerLinks {
		d := load(t, tab, href)
		h1, err := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS("h1 code")))
		if err != nil {
			t.Fatal(err)
		}
		cus := h1
		seen[cus] = true
		shown := 0
		for _, c := range d.Charts {
			shown++
			g := map[string]meterdb.Grouping{"hourly": meterdb.GroupHour, "daily": meterdb.GroupDay}[c.ID]
			start, end := hourStart, hourEnd
			if g == meterdb.GroupDay {
				start, end = dayStart, dayEnd
			}
			s, err := e.db.Summaries(bg, meterdb.SummaryParams{Meter: c.Meter, Customer: cus, Start: start, End: end, Grouping: g})
			if err != nil {
				t.Fatal(err)
			}
			samePoints(t, "customer "+cus+" meter "+c.Meter+" chart "+c.ID, c.Points, points(s), false)
			for _, tb := range d.Tables {
				if tb.Meter == c.Meter && tb.ID == c.ID {
					samePoints(t, "customer "+cus+" meter "+c.Meter+" table "+tb.ID, tb.Points, points(s), true)
				}
			}
		}
		if shown == 0 {
			t.Errorf("customer %q: no charts", cus)
		}
		if len(d.Totals)*2 != shown {
			t.Errorf("customer %q: %d 30-day totals for %d charts", cus, len(d.Totals), shown)
		}
		for _, tot := range d.Totals {
			s, err := e.db.Summaries(bg, meterdb.SummaryParams{Meter: tot.Meter, Customer: cus, Start: periods[2][0], End: periods[2][1]})
			if err != nil {
				t.Fatal(err)
			}
			samePoints(t, "customer "+cus+" meter "+tot.Meter+" 30-day total", []point{tot.Total}, points(s), true)
		}
		w.check(t, "customer "+cus)
		if cus == "cus_alpha" {
			screenshot(t, tab, "customer")
		}
	}
	for _, c := range e.customers {
		if !seen[c] {
			t.Errorf("no page reached for customer %q", c)
		}
	}
}

// location returns the tab's URL.
func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// submitLogin types key into the login form and submits it, and returns
// the status of the page that answers.
func submitLogin(t *testing.T, ctx context.Context, key string) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx,
		chromedp.SendKeys(chromedp.CSS("#key"), key),
		chromedp.Click(chromedp.CSS("form.login button")))
	if err != nil {
		t.Fatalf("submitting the login form: %v", err)
	}
	return resp.Status
}

func testBrowserLogin(t *testing.T, ctx context.Context) {
	e := newEnv(t, testKey)
	tab, w := newTab(t, ctx, e.srv.URL)
	m := e.meters["api_calls"]
	page := e.dashURL() + "meters/" + m.ID

	// Without credentials, a page leads to the login form.
	if _, err := chromedp.Run(tab, chromedp.NavigateResponse(page)); err != nil {
		t.Fatal(err)
	}
	if got, want := location(t, tab), e.dashURL()+"login?next=%2Fmeters%2F"+m.ID; got != want {
		t.Fatalf("without credentials: at %s, want %s", got, want)
	}
	w.check(t, "login form")
	screenshot(t, tab, "login")

	// A form whose CSRF token was removed is refused, key or not.
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=csrf]').remove()`)); err != nil {
		t.Fatal(err)
	}
	if st := submitLogin(t, tab, testKey); st != 403 {
		t.Errorf("login without CSRF token: status %d, want 403", st)
	}
	w.check(t, "login without CSRF token", "status of 403")
	cookies := func() map[string]*network.Cookie {
		t.Helper()
		res, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{e.dashURL()}})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*network.Cookie{}
		for _, c := range res.Cookies {
			out[c.Name] = c
		}
		return out
	}
	if c := cookies()["meterdb_session"]; c != nil {
		t.Errorf("session cookie after a refused login: %+v", c)
	}

	// A wrong key.
	if _, err := chromedp.Run(tab, chromedp.NavigateResponse(page)); err != nil {
		t.Fatal(err)
	}
	if st := submitLogin(t, tab, "sk_test_wrong"); st != 401 {
		t.Errorf("login with a wrong key: status %d, want 401", st)
	}
	w.check(t, "login with a wrong key", "status of 401")

	// The right key leads to the page that asked for it.
	if st := submitLogin(t, tab, testKey); st != 200 {
		t.Fatalf("login: status %d", st)
	}
	if got := location(t, tab); got != page {
		t.Errorf("after login: at %s, want %s", got, page)
	}
	c := cookies()["meterdb_session"]
	if c == nil || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/dashboard/" || strings.Contains(c.Value, testKey) {
		t.Errorf("session cookie %+v", c)
	}
	if d := read(t, tab); len(d.Charts) != 2 {
		t.Errorf("after login: %d charts on the meter page", len(d.Charts))
	}
	w.check(t, "meter page after login")

	// Logout, and the pages lead to the login form again.
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS("form.logout button"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(tab, chromedp.NavigateResponse(page)); err != nil {
		t.Fatal(err)
	}
	if got := location(t, tab); !strings.HasPrefix(got, e.dashURL()+"login?") {
		t.Errorf("after logout: at %s", got)
	}
	w.check(t, "after logout")
}
