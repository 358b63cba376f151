package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/export"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
	"github.com/meterdb/meterdb/stripeapi"
)

// Exit statuses of meterd export.
const (
	exitOK    = 0
	exitError = 1 // the export failed: I/O, server, database
	exitUsage = 2 // bad flags or parameters: fix the command line
)

const exportUsage = `usage: meterd export -meter ID|EVENT_NAME -from T -to T [-grouping hour|day|none] [-format csv|ndjson]
                     [-db FILE] [-url http://127.0.0.1:12111 -api-key KEY]

Writes per-customer usage of a meter over [-from, -to) to standard output, one row per
customer per window (customer, meter, event_name, start, end, value, count), each equal to
the Stripe event summary for it. -from and -to take RFC 3339 times or unix seconds.

With -db alone, the file is opened read-only. When a running meterd holds the file, pass
-url (and -api-key, or METERD_API_KEY) to read through its /v1/meterdb/export endpoint;
with both -db and -url, the file is read when it is free and the server otherwise.

`

// runExport is `meterd export`: it returns the process exit status.
func runExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meterd export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, exportUsage)
		fs.PrintDefaults()
	}
	dbPath := fs.String("db", "meterdb.db", "database `file`, opened read-only")
	meterFlag := fs.String("meter", "", "meter `id` (mtr_…) or event name")
	fromFlag := fs.String("from", "", "start of the period, inclusive: RFC 3339 or unix seconds")
	toFlag := fs.String("to", "", "end of the period, exclusive: RFC 3339 or unix seconds")
	groupingFlag := fs.String("grouping", "none", "`window`: hour, day or none (one row per customer for the whole period)")
	formatFlag := fs.String("format", "csv", "`format`: csv or ndjson")
	urlFlag := fs.String("url", "", "base `URL` of a running meterd, e.g. http://127.0.0.1:12111")
	keyFlag := fs.String("api-key", "", "API `key` for -url (default $METERD_API_KEY, the first of its keys)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitUsage
		}
		return exitUsage // the flag package printed the error and the usage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "meterd export: "+format+"\n", a...)
		fmt.Fprintln(stderr, "run 'meterd export -h' for the flags")
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	p := export.Params{Meter: *meterFlag}
	var err error
	if p.Meter == "" {
		return usage("-meter is required: a meter id (mtr_…) or event name")
	}
	if p.From, err = export.ParseTime("from", *fromFlag); err != nil {
		return usage("-from: %s", paramMessage(err))
	}
	if p.To, err = export.ParseTime("to", *toFlag); err != nil {
		return usage("-to: %s", paramMessage(err))
	}
	if p.Grouping, err = export.ParseGrouping(*groupingFlag); err != nil {
		return usage("-grouping: %s", paramMessage(err))
	}
	if p.Format, err = export.ParseFormat(*formatFlag); err != nil {
		return usage("-format: %s", paramMessage(err))
	}
	dbSet := false
	fs.Visit(func(f *flag.Flag) { dbSet = dbSet || f.Name == "db" })
	key := *keyFlag
	if key == "" {
		if keys := parseKeys(getenv("METERD_API_KEY")); len(keys) > 0 {
			key = keys[0]
		}
	}

	fail := func(err error) int {
		var pe *export.ParamError
		var qe *meterdb.QueryError
		if errors.As(err, &pe) || errors.As(err, &qe) || errors.Is(err, meter.ErrNotFound) || errors.Is(err, errBadRequest) {
			return usage("%v", err)
		}
		fmt.Fprintln(stderr, "meterd export:", err)
		return exitError
	}
	if *urlFlag == "" || dbSet {
		err := exportFile(ctx, *dbPath, stdout, p)
		if !errors.Is(err, store.ErrLocked) {
			if err != nil {
				return fail(err)
			}
			return exitOK
		}
		if *urlFlag == "" {
			fmt.Fprintf(stderr, "meterd export: %s is held by another process (a running meterd?): "+
				"pass -url http://ADDR -api-key KEY to export through it\n", *dbPath)
			return exitError
		}
	}
	if err := exportHTTP(ctx, *urlFlag, key, stdout, p); err != nil {
		return fail(err)
	}
	return exitOK
}

// paramMessage returns the sentence of a *export.ParamError.
func paramMessage(err error) string {
	var pe *export.ParamError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

// exportFile exports from the database file at path, opened read-only.
func exportFile(ctx context.Context, path string, w io.Writer, p export.Params) error {
	db, err := meterdb.Open(path, &meterdb.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	return errors.Join(export.Write(ctx, db, w, p), db.Close())
}

// errBadRequest marks a 4xx answer of the server: the parameters are wrong.
var errBadRequest = errors.New("rejected by the server")

// exportHTTP exports through the /v1/meterdb/export endpoint of the
// meterd at base.
func exportHTTP(ctx context.Context, base, key string, w io.Writer, p export.Params) error {
	url := strings.TrimRight(base, "/") + export.Path + "?" + p.Query()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		msg := strings.TrimSpace(string(body))
		var eb export.ErrorBody
		if jsonErr := json.Unmarshal(body, &eb); jsonErr == nil && eb.Error.Message != "" {
			msg = eb.Error.Message
			if eb.Error.Param != "" {
				msg = eb.Error.Param + ": " + msg
			}
		}
		if res.StatusCode == http.StatusBadRequest || res.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w (%s): %s", errBadRequest, res.Status, msg)
		}
		return fmt.Errorf("%s answered %s: %s", base, res.Status, msg)
	}
	if _, err := io.Copy(w, res.Body); err != nil {
		return fmt.Errorf("reading the export from %s (it is incomplete): %w", base, err)
	}
	return nil
}

// withExport returns h with the usage export (export.Handler) mounted at
// export.Path behind the same API keys, without the server's write
// timeout; every other path goes to h.
func withExport(h http.Handler, db *meterdb.DB, keys []string) (http.Handler, error) {
	inner := export.Handler(db)
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A large export takes longer than the server's write timeout.
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
		inner.ServeHTTP(w, r)
	})
	eh, err := stripeapi.RequireAPIKey(stream, &stripeapi.Options{APIKeys: keys})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(export.Path, eh)
	mux.Handle("/", h)
	return mux, nil
}
