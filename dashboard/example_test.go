package dashboard_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/dashboard"
	"github.com/meterdb/meterdb/stripeapi"
)

// The dashboard mounted under /dashboard/ beside the Stripe API, as meterd
// serves it, both behind the same key. A browser without a session is sent
// to the login form; a script sends the key.
func ExampleNewHandler() {
	db, err := meterdb.Open("", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	keys := []string{"sk_test_example"}
	api, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: keys})
	if err != nil {
		log.Fatal(err)
	}
	dash, err := dashboard.NewHandler(db, &dashboard.Options{APIKeys: keys})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/dashboard/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Location"))

	req, _ := http.NewRequest("GET", srv.URL+"/dashboard/", nil)
	req.Header.Set("Authorization", "Bearer sk_test_example")
	resp, err = noRedirect.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	// Output:
	// 303 See Other ./login?next=%2F
	// 200 OK text/html; charset=utf-8
}
