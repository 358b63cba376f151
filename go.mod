module github.com/meterdb/meterdb

go 1.26

require github.com/google/btree v1.1.3

require (
	github.com/stripe/stripe-go/v85 v85.0.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
