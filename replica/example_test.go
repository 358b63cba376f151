package replica_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/meterdb/meterdb/replica"
	"github.com/meterdb/meterdb/sharedlog"
)

// ExampleOpen opens the log of a three-node NATS cluster, appends a
// record and reads the log from its start. (It needs running servers, so
// it is compiled but not run.)
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := replica.Open(ctx, replica.Options{
		URLs:      []string{"nats://nats-a.example:4222", "nats://nats-b.example:4222", "nats://nats-c.example:4222"},
		CredsFile: "/etc/meterd/nats.creds",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	pos, err := l.Append(ctx, []byte("a record"))
	if errors.Is(err, sharedlog.ErrUnavailable) {
		log.Fatal("no quorum now; retry later: ", err)
	} else if err != nil {
		log.Fatal(err)
	}
	err = l.Read(ctx, 0, func(p uint64, rec []byte) error {
		log.Printf("%d: %q", p, rec)
		if p == pos {
			return errors.New("read up to my record")
		}
		return nil
	})
	if errors.Is(err, sharedlog.ErrTruncated) {
		log.Fatal("the stream dropped records: start from a snapshot")
	}
}
