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
// Measured on the project's 2-core machine shared with other builds (load
// average 3 to 6): an in-process single server is ready in about 50 ms;
// an in-process three-node cluster has a meta leader after about 2.2 s; a
// process cluster after 3.5 to 5 s, including the link of nats-server
// from the build cache (a cold build takes longer). When a stream
// leader's process is SIGKILLed, its followers elect a new leader within
// the server's raft election timeout (4 to 9 s, not configurable from
// outside the server package): writes stopped for about 7 s in the
// replica package's test. An in-process Kill is a shutdown, during which
// the leader hands its streams over: writes stopped for 0.05 to 2 s.
//
// # Ownership and concurrency
//
// Everything started is stopped by the test's Cleanup; store directories
// live under t.TempDir. A Cluster's methods are safe for concurrent use,
// but Kill and Restart of the same node must not race each other. The
// nats-server binary is built at most once per test binary; Cleanup
// (call it from TestMain) removes it.
package natstest
