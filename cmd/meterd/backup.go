package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/store"
	"github.com/meterdb/meterdb/stripeapi"
)

// backupPath is where a running meterd serves a hot copy of its database
// file, to the same API keys as the Stripe API.
const backupPath = "/v1/meterdb/backup"

const backupUsage = `usage: meterd backup -db FILE -out FILE [-url URL [-api-key KEY]]

Writes a consistent copy of the database to -out (which must not exist),
then verifies the copy. Without -url it reads -db directly, which works
only while no server has the file open; with -url it asks the meterd
serving at URL (for example http://127.0.0.1:12111) for a hot copy of its
database over GET ` + backupPath + `, authenticated with -api-key (default
$METERD_API_KEY), while it keeps serving. Exit status: 0 when the copy is
written and verifies clean, 1 otherwise.
`

// backupMain is "meterd backup": it returns the exit status.
func backupMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meterd backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage) }
	dbPath := fs.String("db", "", "database `file` to copy (when no server has it open)")
	out := fs.String("out", "", "`file` to write the copy to; must not exist")
	url := fs.String("url", "", "base `URL` of a running meterd to copy its database from")
	key := fs.String("api-key", "", "API `key` for -url (default $METERD_API_KEY, first of the list)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || (*dbPath == "" && *url == "") || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if err := backup(ctx, *dbPath, *out, *url, firstKey(*key, getenv), stdout); err != nil {
		fmt.Fprintln(stderr, "meterd backup:", err)
		return 1
	}
	return 0
}

func firstKey(flagValue string, getenv func(string) string) string {
	keys := parseKeys(flagValue)
	if keys == nil {
		keys = parseKeys(getenv("METERD_API_KEY"))
	}
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

// backup writes the copy to a temporary file beside out, syncs and
// verifies it, and only then gives it the name out.
func backup(ctx context.Context, dbPath, out, url, key string, stdout io.Writer) (err error) {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists; choose another -out", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".partial-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	var n int64
	if url != "" {
		n, err = backupOverHTTP(ctx, url, key, f)
	} else {
		n, err = backupFile(dbPath, f)
	}
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	r, err := meterdb.Verify(tmp, nil)
	if err != nil {
		return fmt.Errorf("the copy does not verify: %w\n%s", err, r.String())
	}
	if err := os.Link(tmp, out); err != nil {
		return err
	}
	os.Remove(tmp)
	fmt.Fprintf(stdout, "wrote %s: %d bytes, %d events in the log, verified\n", out, n, r.Events)
	return nil
}

// backupFile copies a database file that no process has open for writing.
func backupFile(dbPath string, w io.Writer) (int64, error) {
	s, err := store.Open(dbPath, &store.Options{ReadOnly: true, LockTimeout: time.Second})
	if errors.Is(err, store.ErrLocked) {
		return 0, fmt.Errorf("%w; if a meterd serves it, copy it from that server with -url (for example -url http://127.0.0.1:12111)", err)
	}
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.Backup(w)
}

func backupOverHTTP(ctx context.Context, url, key string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+backupPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return io.Copy(w, resp.Body)
}

// withBackup serves GET /v1/meterdb/backup beside h: a hot copy of db's
// file, for callers with one of keys (without keys, any sk_test_ key, as
// the API accepts on loopback addresses). Everything else goes to h.
// Requests are not routed through a ServeMux, which would clean or
// redirect paths that h answers itself.
func withBackup(h http.Handler, db *meterdb.DB, keys []string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != backupPath {
			h.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"Backups are read with GET."}}`+"\n")
			return
		}
		if !backupAllowed(r, keys) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"A valid API key is required for backups."}}`+"\n")
			return
		}
		// A large file takes longer than the server's write timeout.
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="meterdb-backup.db"`)
		start := time.Now()
		n, err := db.Backup(w)
		if err != nil {
			// The status is sent; a truncated copy fails verification.
			log.Error("backup failed", "err", err, "bytes", n)
			return
		}
		log.Info("backup served", "bytes", n, "took", time.Since(start))
	})
}

// backupAllowed reports whether r carries one of keys, or, with no keys
// configured, a test key, as the API accepts.
func backupAllowed(r *http.Request, keys []string) bool {
	key := stripeapi.Credential(r)
	if len(keys) == 0 {
		return strings.HasPrefix(key, "sk_test_") && len(key) > len("sk_test_")
	}
	return key != "" && stripeapi.MatchKey(keys, key)
}
