package jsonw

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// FuzzJSONUTF8 checks the UTF-8 check of JSON bodies against utf8.Valid,
// and the shape of its error.
func FuzzJSONUTF8(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, "{\"a\":\"\xff\"}", "{\"\xfe\":1}", "{\"a\":[\"x\",\"\xc3\x28\"]}",
		"{\"a\":{\"b\":\"\xe2\x82\"}}", "\xff", `[]`, "{\"events\":[{\"payload\":{\"k\":\"v\xff\"}}]}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := CheckUTF8(body)
		if (err == nil) != utf8.Valid(body) {
			t.Fatalf("CheckUTF8(%q) = %v, utf8.Valid %v", body, err, utf8.Valid(body))
		}
		if err == nil {
			return
		}
		if err.Status != 400 || err.Code != wire.CodeParameterInvalid || !utf8.ValidString(err.Param) || !utf8.ValidString(err.Message) {
			t.Fatalf("CheckUTF8(%q) = %+v", body, err)
		}
		if !strings.Contains(err.Message, "UTF-8") {
			t.Fatalf("CheckUTF8(%q) says %q", body, err.Message)
		}
	})
}
