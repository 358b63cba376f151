package jsonw

import (
	"time"
)

// ParseRFC3339 parses an RFC 3339 date-time: fractional seconds of any
// length and a Z or ±hh:mm offset. The common UTC forms are parsed
// without allocating.
func ParseRFC3339(b []byte) (time.Time, bool) {
	// YYYY-MM-DDTHH:MM:SS[.f…](Z|±hh:mm)
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && (b[10] == 'T' || b[10] == 't') &&
		b[13] == ':' && b[16] == ':' && (b[len(b)-1] == 'Z' || b[len(b)-1] == 'z') {
		num := func(i, n int) (int, bool) {
			v := 0
			for _, c := range b[i : i+n] {
				if c < '0' || c > '9' {
					return 0, false
				}
				v = v*10 + int(c-'0')
			}
			return v, true
		}
		y, ok1 := num(0, 4)
		mo, ok2 := num(5, 2)
		d, ok3 := num(8, 2)
		h, ok4 := num(11, 2)
		mi, ok5 := num(14, 2)
		s, ok6 := num(17, 2)
		ns, okf := 0, true
		if rest := b[19 : len(b)-1]; len(rest) > 0 {
			okf = len(rest) >= 2 && len(rest) <= 10 && rest[0] == '.'
			if okf {
				f, ok := num(20, len(rest)-1)
				okf = ok
				for i := len(rest) - 1; i < 9; i++ {
					f *= 10
				}
				ns = f
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && okf && mo >= 1 && mo <= 12 && d >= 1 &&
			d <= daysIn(time.Month(mo), y) && h < 24 && mi < 60 && s < 60 {
			return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC), true
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
