package wire

import (
	"testing"
	"unicode/utf8"
)

func TestErrInvalidUTF8(t *testing.T) {
	for param, want := range map[string]string{
		"":               "Invalid request body: it is not valid UTF-8.",
		"identifier":     "Invalid identifier: must be valid UTF-8.",
		"payload[k\xff]": "Invalid payload[k\uFFFD]: must be valid UTF-8.",
	} {
		e := ErrInvalidUTF8(param)
		if e.Message != want || e.Status != 400 || e.Code != CodeParameterInvalid || !utf8.ValidString(e.Param) {
			t.Errorf("ErrInvalidUTF8(%q) = %+v, want message %q", param, e, want)
		}
	}
}

func TestNames(t *testing.T) {
	if got := NestedName("", "a"); got != "a" {
		t.Errorf("NestedName: %q", got)
	}
	if got := NestedName("events[0]", "payload"); got != "events[0][payload]" {
		t.Errorf("NestedName: %q", got)
	}
	if got := Truncate("abcdef", 3); got != "abc…" {
		t.Errorf("Truncate: %q", got)
	}
	if got := Truncate("abc", 3); got != "abc" {
		t.Errorf("Truncate: %q", got)
	}
	var p Problems
	first, second := ErrMissingParam("a"), ErrMissingParam("b")
	p.Fail(first)
	p.Fail(second)
	if p.First != first {
		t.Errorf("Problems kept %v, want the first", p.First)
	}
}
