module github.com/meterdb/meterdb

go 1.26.0

require (
	github.com/google/btree v1.1.3
	github.com/stripe/stripe-go/v85 v85.0.0
	go.etcd.io/bbolt v1.5.0
	golang.org/x/mod v0.43.0
	pgregory.net/rapid v1.3.0
)

require golang.org/x/sys v0.45.0 // indirect
