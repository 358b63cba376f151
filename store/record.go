package store

// Event is one accepted event as the log keeps it.
type Event struct {
	Seq        uint64 // receipt order, unique per database, starting at 1
	Meter      uint64 // the meter's Seq
	Customer   string
	Identifier string
	Value      int64 // 1 for count meters
	Timestamp  int64 // unix seconds
	Received   int64 // unix seconds
}

// Cancel is one cancellation as the log keeps it.
type Cancel struct {
	Seq      uint64 // the Seq of the cancelled event
	Received int64  // unix seconds
}

// Group is what one log record holds: the events of one Record or
// RecordBatch call, or one cancellation.
type Group struct {
	Events  []Event
	Cancels []Cancel
}
