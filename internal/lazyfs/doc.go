// Package lazyfs is a FUSE file system for tests that loses, on command,
// everything that was not fsynced: a power cut. It is a test dependency
// only: nothing outside tests imports it (TestImportGraph checks that the
// library does not).
//
// A lazy file system is a view of a backing directory mounted with
// go-fuse (github.com/hanwen/go-fuse/v2), in the manner of Jepsen's LazyFS.
// Reads and writes go through it, but what reaches the backing directory
// is only what was synced, so that after a power cut the backing directory
// is exactly what a disk would hold after losing power.
//
// # The model
//
// File data. A write goes into the file's overlay, a map of 4 KiB blocks
// (BlockSize) kept in memory, not into the backing file. Reads see the
// overlay over the backing file. An fsync or fdatasync of the file (of any
// of its open descriptors: the overlay belongs to the inode) writes its
// overlay to the backing file, fsyncs that, and empties the overlay. Sizes
// follow the same rule: a truncate, an fallocate that grows the file
// (mode 0; FALLOC_FL_KEEP_SIZE does nothing, other modes are refused) and
// an open with O_TRUNC change the size in the overlay only, until the next
// sync; a file grown by truncate and synced (as bbolt grows its file) has
// the new size durably. Closing a file syncs nothing. Metadata (mode,
// owner, times) is passed through at once.
//
// Names. A file or directory created through the mount is created in the
// backing directory at once (empty), but its name is pending: a power cut
// removes it unless its parent directory was fsynced after the creation.
// This is stricter than ext4 or XFS in practice (where an fsync of a new
// file also makes its name durable) and as strict as POSIX: a program
// that creates a file must sync the directory to keep it. A pending name
// that is renamed stays pending under its new name; a hard link is a new
// name, pending like a created one. Unlink, rmdir and rename are lenient:
// they take effect in the backing directory at once, durable without a
// sync. Symbolic links and special files are not supported.
//
// The power cut. PowerCut drops every overlay and every pending name, then
// makes every request that would change something fail with EIO; reads
// still answer, from what was synced. It happens between requests, never
// within one: an fsync that had started flushing completes first (it was
// durable before the power went), one that had not fails. ArmCut cuts the
// power within the request stream, at the first request a function
// chooses (the third fsync from now, say), so that a test can cut while a
// commit is half written. PowerCutKeeping models a disk that wrote back
// part of its cache before the power went: the unsynced blocks that a
// function chooses reach the backing file, as far as they lie within the
// file's synced size (the size is file system metadata, durable only by a
// sync); blocks are whole (no torn sectors).
//
// Caches. The mount asks the kernel to cache no names and no attributes,
// and opens files without FOPEN_KEEP_CACHE, so that every open sees the
// overlay. Within an open, the kernel caches data pages (which mmap needs:
// bbolt maps its file read-only and writes with pwrite) and writes
// through them, so they agree with the overlay. After a power cut the test
// kills the processes using the mount and unmounts it (Unmount, which
// also drops anything unsynced), and then reads the backing directory
// directly, or mounts it again: no kernel cache survives that.
//
// A process must not map a file of a mount that its own process serves:
// a page fault that waits for the FUSE server can deadlock with the Go
// runtime stopping the world. Tests run the program under test (a store
// that maps its file) in a child process.
//
// # Mounting
//
// Mount uses mount(2) directly (MountOptions.DirectMount), which needs
// root and /dev/fuse, and falls back to the fusermount helper if that
// fails and one is installed. MountTest mounts for a test and unmounts
// when the test ends, failed or not; without FUSE it skips the test,
// except under CI=true, where it fails it.
package lazyfs
