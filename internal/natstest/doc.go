// Package natstest starts real NATS JetStream servers for tests: one
// server, or a three-node cluster on loopback ports, in-process or as
// separate nats-server processes.
//
// # Data flow
//
// RunServer starts one in-process JetStream server with its store in a
// temporary directory. StartCluster starts three in-process servers that
// route to each other on loopback ports and waits until the cluster has
// a JetStream meta leader; StartProcessCluster does the same with three
// nats-server processes built once per test binary from the module's own
// nats-server version (go build github.com/nats-io/nats-server/v2). A
// test connects through ClientURL or ClientURLs, and Kill(i) / Restart(i)
// stop a node and start it again with the same name, ports and store
// directory, so it rejoins the cluster with its stored data.
//
// Kill of an in-process node is Server.Shutdown: listeners and routes
// close at once, but the server flushes its store on the way down. Kill
// of a process node is SIGKILL: nothing is flushed, as in a crash.
//
// # Timings
//
// Measured on the project's 2-core machine under a load average near 4:
// an in-process single server is ready in about 50 ms; an in-process
// three-node cluster has a meta leader after about 2 s; a process
// cluster after about 2 s plus the first build of nats-server (about 20
// s without a build cache, about 1 s of linking with one). After the
// node leading a stream dies, its followers elect a new leader within
// the server's raft election timeout (4 to 9 s, not configurable from
// outside the server package), so a test that kills a stream leader
// costs that much.
//
// # Ownership and concurrency
//
// Everything started is stopped by the test's Cleanup; store directories
// live under t.TempDir. A Cluster's methods are safe for concurrent use,
// but Kill and Restart of the same node must not race each other. The
// nats-server binary is built at most once per test binary; Cleanup
// (call it from TestMain) removes it.
package natstest
