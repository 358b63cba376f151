package aggregate

// Entry is one event's contribution to a series.
type Entry struct {
	Seq       uint64 // receipt order, unique per database
	Timestamp int64  // unix seconds
	Value     int64  // 1 for count meters
}

// newer reports whether e comes after o in "last" order: greater
// timestamp, then greater sequence.
func (e Entry) newer(o Entry) bool {
	return e.Timestamp > o.Timestamp || e.Timestamp == o.Timestamp && e.Seq > o.Seq
}

// Cell aggregates a set of entries.
type Cell struct {
	Count int64  // number of entries
	Sum   Int128 // sum of their values
	Last  Entry  // the newest entry: meaningful when Count > 0, for last meters only (hour cells of other meters do not keep it)
}

// Value returns the aggregate a formula asks for: "count", "sum" or "last".
func (c Cell) Value(formula string) Int128 {
	switch formula {
	case "count":
		return Int128Of(c.Count)
	case "sum":
		return c.Sum
	default:
		return Int128Of(c.Last.Value)
	}
}

func (c *Cell) add(e Entry) {
	if c.Count == 0 || e.newer(c.Last) {
		c.Last = e
	}
	c.Count++
	c.Sum = c.Sum.Add(Int128Of(e.Value))
}

// sub removes e's count and value; Last is left for the caller to recompute.
func (c *Cell) sub(e Entry) {
	c.Count--
	c.Sum = c.Sum.Add(Int128Of(e.Value).Neg()) // Neg: -e.Value overflows for math.MinInt64
}

// A minuteCell is one minute's cell in an hour with entries in several
// minutes: 24 bytes, the count and the sum. The newest entry of a minute
// matters for last meters only, whose hours keep every entry (raw): it is
// found there when asked for (bucket.eachMinute), so that the minute cells
// of every meter take less than half the memory a Cell would.
type minuteCell struct {
	Count int64
	Sum   Int128
}

func (c *minuteCell) add(e Entry) {
	c.Count++
	c.Sum = c.Sum.Add(Int128Of(e.Value))
}

func (c *minuteCell) sub(e Entry) {
	c.Count--
	c.Sum = c.Sum.Add(Int128Of(e.Value).Neg())
}

// merge adds o into c.
func (c *Cell) merge(o Cell) {
	if o.Count == 0 {
		return
	}
	if c.Count == 0 || o.Last.newer(c.Last) {
		c.Last = o.Last
	}
	c.Count += o.Count
	c.Sum = c.Sum.Add(o.Sum)
}
