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

// Cancel is one cancellation as the log keeps it. It repeats what replay
// needs of the cancelled event, so that replay never looks the event up.
type Cancel struct {
	Seq       uint64 // the Seq of the cancelled event
	Received  int64  // when the cancellation was received, unix seconds
	Meter     uint64 // the cancelled event's meter, customer, value and timestamp
	Customer  string
	Value     int64
	Timestamp int64
}

// Group is what one log record holds: the events of one Record or
// RecordBatch call (all received at the same second), or cancellations.
type Group struct {
	Events  []Event
	Cancels []Cancel
}
