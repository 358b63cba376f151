package stripeapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestInvalidUTF8 sends invalid UTF-8 in string parameters of every
// encoding (v1 forms and query strings, v2 JSON, the stream) and expects a
// 400 parameter_invalid naming the parameter; nothing is recorded.
func TestInvalidUTF8(t *testing.T) {
	e := newEnv(t, nil, nil)
	if res, body := e.do("POST", "/v1/billing/meters",
		"display_name=Calls&event_name=calls&default_aggregation[formula]=sum"); res.StatusCode != 200 {
		t.Fatalf("creating the meter: %d %v", res.StatusCode, body)
	}
	meterID := func() string {
		_, body := e.do("GET", "/v1/billing/meters", "")
		return body["data"].([]any)[0].(map[string]any)["id"].(string)
	}()
	sess := func() string {
		_, body := e.do("POST", "/v2/billing/meter_event_session", "", "Content-Type", "")
		return body["authentication_token"].(string)
	}()
	const bad = "\xff"
	for _, tc := range []struct {
		name, method, path, body, param string
		hdr                             []string
	}{
		{"v1 identifier", "POST", "/v1/billing/meter_events",
			"event_name=calls&payload[stripe_customer_id]=cus_1&payload[value]=1&identifier=%FF", "identifier", nil},
		{"v1 identifier, other bytes", "POST", "/v1/billing/meter_events",
			"event_name=calls&payload[stripe_customer_id]=cus_1&payload[value]=1&identifier=id%C3%28", "identifier", nil},
		{"v1 event_name", "POST", "/v1/billing/meter_events",
			"event_name=calls%FE&payload[stripe_customer_id]=cus_1&payload[value]=1", "event_name", nil},
		{"v1 payload value", "POST", "/v1/billing/meter_events",
			"event_name=calls&payload[stripe_customer_id]=cus_%FF&payload[value]=1", "payload[stripe_customer_id]", nil},
		{"v1 payload key", "POST", "/v1/billing/meter_events",
			"event_name=calls&payload[stripe_customer_id]=cus_1&payload[value]=1&payload[k%FF]=v", "payload[k\uFFFD]", nil},
		{"v1 display_name", "POST", "/v1/billing/meters",
			"display_name=%FFCalls&event_name=other&default_aggregation[formula]=sum", "display_name", nil},
		{"v1 update display_name", "POST", "/v1/billing/meters/" + meterID, "display_name=x%FF", "display_name", nil},
		{"v1 summaries customer", "GET", "/v1/billing/meters/" + meterID +
			"/event_summaries?customer=cus_%FF&start_time=1772323200&end_time=1772409600", "", "customer", nil},
		{"v1 adjustment identifier", "POST", "/v1/billing/meter_event_adjustments",
			"event_name=calls&type=cancel&cancel[identifier]=%FF", "cancel[identifier]", nil},
		{"v2 identifier", "POST", "/v2/billing/meter_events",
			`{"event_name":"calls","identifier":"id` + bad + `","payload":{"stripe_customer_id":"cus_1","value":"1"}}`,
			"identifier", []string{"Content-Type", "application/json"}},
		{"v2 payload value", "POST", "/v2/billing/meter_events",
			`{"event_name":"calls","payload":{"stripe_customer_id":"cus_` + bad + `","value":"1"}}`,
			"payload[stripe_customer_id]", []string{"Content-Type", "application/json"}},
		{"v2 payload key", "POST", "/v2/billing/meter_events",
			`{"event_name":"calls","payload":{"stripe_customer_id":"cus_1","value":"1","k` + bad + `":"v"}}`,
			"payload[k\uFFFD]", []string{"Content-Type", "application/json"}},
		{"stream identifier", "POST", "/v2/billing/meter_event_stream",
			`{"events":[{"event_name":"calls","payload":{"stripe_customer_id":"cus_1","value":"1"}},` +
				`{"event_name":"calls","identifier":"a` + bad + `","payload":{"stripe_customer_id":"cus_1","value":"1"}}]}`,
			"events[1][identifier]", []string{"Content-Type", "application/json", "Authorization", "Bearer " + sess}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			if res.StatusCode != http.StatusBadRequest || errField(body, "code") != "parameter_invalid" {
				t.Fatalf("status %d, body %v; want 400 parameter_invalid", res.StatusCode, body)
			}
			p := errField(body, "param")
			if strings.HasPrefix(tc.path, "/v2/") {
				p = errField(body, "message") // v2 errors carry the param in the message
			}
			if !strings.Contains(p, tc.param) || !strings.Contains(errField(body, "message"), "UTF-8") {
				t.Errorf("error %v does not name %s as invalid UTF-8", body, tc.param)
			}
		})
	}
	// Nothing was recorded: the summary of cus_1 is empty.
	_, body := e.do("GET", "/v1/billing/meters/"+meterID+
		"/event_summaries?customer=cus_1&start_time=1772323200&end_time=1772409600", "")
	for _, s := range body["data"].([]any) {
		if v := s.(map[string]any)["aggregated_value"]; v != 0.0 {
			t.Errorf("events with invalid UTF-8 were recorded: summary %v", s)
		}
	}
}
