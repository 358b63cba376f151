package lazyfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configure a mount. Nil means the defaults.
type Options struct {
	// SyncDelay is how long every fsync of a file waits before it flushes
	// the file's overlay: the latency of a slow disk. It widens the window
	// between a write and its durability, in which a power cut loses it.
	SyncDelay time.Duration
	// NoBackingSync skips the fsync of the backing file after a flush: the
	// flushed data is then durable as far as the test is concerned (it is
	// in the backing file) but not across a real crash of this machine.
	NoBackingSync bool
	// BusyWait is how long Unmount retries a busy mount before it aborts
	// it. Zero means 3 s.
	BusyWait time.Duration
	// Debug logs every FUSE request.
	Debug bool
}

// Stats count what the file system did since Mount.
type Stats struct {
	Writes       int64 // write requests
	WriteBytes   int64 // bytes written (into overlays)
	Fsyncs       int64 // fsyncs of files that succeeded
	DirSyncs     int64 // fsyncs of directories that succeeded
	FlushedBytes int64 // bytes written to backing files by fsyncs
	Truncates    int64 // size changes (truncate, fallocate, open with O_TRUNC)
	Failed       int64 // requests refused after the power cut
	// Set by the power cut:
	DroppedBytes int64 // unsynced bytes lost
	KeptBytes    int64 // unsynced bytes that reached the backing file anyway (PowerCutKeeping)
	DroppedFiles int   // files that had unsynced data or size changes
	DroppedNames int   // created files and directories removed (their directory was not synced)
}

// FS is a mounted lazy file system.
type FS struct {
	mountpoint, backing string
	opts                Options
	server              *fuse.Server
	dev                 uint64 // device number of the mount

	// cutMu is held for reading by every request that changes anything
	// (and by fsync while it flushes), for writing by the power cut: the
	// cut happens between requests, never within one.
	cutMu  sync.RWMutex
	cut    bool
	cutAt  time.Time     // set with cut
	cutted chan struct{} // closed with cut

	armMu   sync.Mutex
	armWhen func(Op) bool // the armed cut, nil if none
	armKeep func(int64) bool
	armErr  error // of the armed cut's PowerCutKeeping

	mu      sync.Mutex         // guards the fields below
	nextIno uint64             // inode numbers given to the kernel
	inodes  map[devIno]*file   // by backing inode: their overlays outlive the kernel's inodes
	pending map[string]bool    // names (relative paths) created since their directory was last synced
	stats   Stats              //
	syncs   []time.Time        // when each successful fsync of a file completed
	unmount sync.Once          //
	errs    []error            // of Unmount
	closers map[*file]struct{} // files with an open backing descriptor
}

type devIno struct{ dev, ino uint64 }

// Mount mounts a lazy view of the directory backing on mountpoint (an
// existing empty directory). It mounts with mount(2) directly, which needs
// root and /dev/fuse; without them it falls back to the fusermount helper
// if one is installed. Every Mount must be followed by Unmount.
func Mount(mountpoint, backing string, opts *Options) (*FS, error) {
	if opts == nil {
		opts = &Options{}
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(backing); err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("lazyfs: backing %s is not a directory", backing)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("lazyfs: no FUSE device: %w", err)
	}
	if os.Geteuid() != 0 && !haveFusermount() {
		return nil, errors.New("lazyfs: mounting needs root (for mount(2)) or a fusermount helper, and there is neither")
	}
	f := &FS{mountpoint: mountpoint, backing: backing, opts: *opts, nextIno: 1, cutted: make(chan struct{}),
		inodes: map[devIno]*file{}, pending: map[string]bool{}, closers: map[*file]struct{}{}}
	root := &node{lfs: f}
	var zero time.Duration
	mopts := &fs.Options{
		// No kernel caching of names or attributes: every lookup and stat
		// asks the overlay. (Data pages are cached within one open: the
		// kernel writes through them, so they agree with the overlay.)
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			DirectMount:   true, // mount(2) itself; fusermount only if that fails
			FsName:        "lazyfs:" + backing,
			Name:          "lazyfs",
			Debug:         opts.Debug,
			DisableXAttrs: true,
		},
	}
	server, err := fs.Mount(mountpoint, root, mopts)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mounting %s: %w", mountpoint, err)
	}
	f.server = server
	var st syscall.Stat_t
	if syscall.Stat(mountpoint, &st) == nil {
		f.dev = uint64(st.Dev)
	}
	return f, nil
}

func haveFusermount() bool {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(name); err == nil {
			return true
		}
	}
	return false
}

// Mountpoint returns where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Backing returns the backing directory.
func (f *FS) Backing() string { return f.backing }

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// SyncTimes returns when each successful fsync of a file completed, in
// order: when the files' data became durable.
func (f *FS) SyncTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.syncs)
}

// PowerCut is a power cut: every write, truncation and name not yet
// synced is lost (the backing directory keeps only what was synced), and
// every later request that would change something fails with EIO, as on a
// machine that has lost power. Reads still answer, from what was synced.
// Call it once; later calls do nothing.
func (f *FS) PowerCut() error { return f.PowerCutKeeping(nil) }

// PowerCutKeeping is PowerCut on a disk that had written back part of its
// cache: keep is asked for every unsynced block (by its offset in its
// file) and the blocks it keeps reach the backing file, within the file's
// synced size. Nil keep keeps nothing.
func (f *FS) PowerCutKeeping(keep func(off int64) bool) error {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	if f.cut {
		return nil
	}
	f.cut, f.cutAt = true, time.Now()
	close(f.cutted)
	// Lock order: a file's mu before f.mu, never the other way round.
	f.mu.Lock()
	files := make([]*file, 0, len(f.inodes))
	for _, fl := range f.inodes {
		files = append(files, fl)
	}
	f.mu.Unlock()
	var errs []error
	var st Stats
	for _, fl := range files {
		fl.mu.Lock()
		if fl.ov != nil && fl.ov.dirty() {
			st.DroppedFiles++
			dropped, kept, err := fl.ov.drop(fl.fd, keep)
			st.DroppedBytes += dropped
			st.KeptBytes += kept
			errs = append(errs, err)
		}
		fl.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.DroppedFiles += st.DroppedFiles
	f.stats.DroppedBytes += st.DroppedBytes
	f.stats.KeptBytes += st.KeptBytes
	// Deepest first, so that a directory goes after what was created in it.
	names := make([]string, 0, len(f.pending))
	for name := range f.pending {
		names = append(names, name)
	}
	sortDeepestFirst(names)
	for _, name := range names {
		if err := os.RemoveAll(filepath.Join(f.backing, name)); err != nil {
			errs = append(errs, err)
		}
		f.stats.DroppedNames++
	}
	clear(f.pending)
	return errors.Join(errs...)
}

// Op is a kind of request that changes something, as ArmCut sees it.
type Op int

const (
	OpWrite    Op = iota // write to a file
	OpFsync              // fsync or fdatasync of a file
	OpTruncate           // size change: truncate, fallocate, open with O_TRUNC
	OpCreate             // creation of a file or directory
	OpRemove             // unlink or rmdir
	OpRename             // rename
	OpFsyncDir           // fsync of a directory
	OpMeta               // chmod, chown, utimes
)

var opNames = [...]string{"write", "fsync", "truncate", "create", "remove", "rename", "fsyncdir", "meta"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// ArmCut arms a power cut that happens within a request: when is called
// (one call at a time) with every request that would change something,
// before it takes effect, and the first time it returns true the power is
// cut (PowerCutKeeping(keep)) and that request fails with EIO. Cutting
// at an fsync, say, catches the file system with written data not yet
// durable. A later ArmCut replaces an armed cut that has not happened.
func (f *FS) ArmCut(when func(Op) bool, keep func(off int64) bool) {
	f.armMu.Lock()
	f.armWhen, f.armKeep = when, keep
	f.armMu.Unlock()
}

// trigger cuts the power if an armed cut chooses op.
func (f *FS) trigger(op Op) {
	f.armMu.Lock()
	when, keep := f.armWhen, f.armKeep
	fire := when != nil && when(op)
	if fire {
		f.armWhen, f.armKeep = nil, nil
	}
	f.armMu.Unlock()
	if fire {
		if err := f.PowerCutKeeping(keep); err != nil {
			f.armMu.Lock()
			f.armErr = err // Unmount returns it
			f.armMu.Unlock()
		}
	}
}

// Cut returns a channel closed when the power is cut.
func (f *FS) Cut() <-chan struct{} { return f.cutted }

// CutTime returns when the power was cut, or the zero time.
func (f *FS) CutTime() time.Time {
	f.cutMu.RLock()
	defer f.cutMu.RUnlock()
	return f.cutAt
}

func sortDeepestFirst(names []string) {
	depth := func(s string) int { return strings.Count(s, "/") }
	for i := 1; i < len(names); i++ { // insertion sort: few names
		for j := i; j > 0 && depth(names[j]) > depth(names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

// Unmount unmounts the file system and waits for its server to stop. It
// does not sync anything: what was not synced (and not dropped by a power
// cut) is lost too, as if the power had been cut now. Every process using
// the mount should have closed its files: a mount still busy after
// Options.BusyWait is aborted (its open files fail with ENOTCONN from then on) and detached,
// and Unmount returns an error saying so. Calling it again does nothing.
func (f *FS) Unmount() error {
	f.unmount.Do(func() {
		// Whatever was not synced is gone: drop it first, so that the
		// backing directory is what a power cut now would leave.
		if err := f.PowerCut(); err != nil {
			f.errs = append(f.errs, err)
		}
		f.armMu.Lock()
		f.armWhen = nil
		if f.armErr != nil {
			f.errs = append(f.errs, f.armErr)
		}
		f.armMu.Unlock()
		if err := f.unmountServer(); err != nil {
			f.errs = append(f.errs, err)
		}
		f.mu.Lock()
		files := make([]*file, 0, len(f.closers))
		for fl := range f.closers {
			files = append(files, fl)
		}
		clear(f.closers)
		f.mu.Unlock()
		for _, fl := range files {
			fl.mu.Lock()
			if fl.fd != nil {
				fl.fd.Close()
				fl.fd, fl.ov = nil, nil
			}
			fl.mu.Unlock()
		}
	})
	return errors.Join(f.errs...)
}

// unmountServer unmounts and waits for the server's loops to end. A mount
// still busy after Options.BusyWait (a process has a file of it open) is
// aborted: its open files fail with ENOTCONN from then on.
func (f *FS) unmountServer() error {
	wait := f.opts.BusyWait
	if wait == 0 {
		wait = 3 * time.Second
	}
	deadline := time.Now().Add(wait)
	err := f.server.Unmount() // tries a few times itself
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		err = f.server.Unmount()
	}
	if err == nil {
		f.server.Wait()
		return nil
	}
	// Abort the connection so that nothing waits for this server any more
	// (a process of ours closing a file of the mount would otherwise hang
	// on the FLUSH that no one answers once the server is gone), then
	// detach the mount.
	aerr := abortConnection(f.dev)
	if derr := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); derr != nil {
		return fmt.Errorf("lazyfs: unmount %s: %w; lazy unmount: %v; abort: %v", f.mountpoint, err, derr, aerr)
	}
	if aerr != nil {
		// The loops end when the last file of the mount is closed.
		return fmt.Errorf("lazyfs: unmount %s: %w (detached; the connection could not be aborted: %v)", f.mountpoint, err, aerr)
	}
	f.server.Wait()
	return fmt.Errorf("lazyfs: unmount %s: %w (aborted and detached)", f.mountpoint, err)
}

// abortConnection aborts the FUSE connection with device number dev
// through the fusectl file system; if fusectl is not mounted at its usual
// place, it mounts it there for the while.
func abortConnection(dev uint64) error {
	if dev == 0 {
		return errors.New("device number unknown")
	}
	const dir = "/sys/fs/fuse/connections"
	minor := (dev & 0xff) | ((dev >> 12) & 0xfff00)
	abort := fmt.Sprintf("%s/%d/abort", dir, minor)
	if _, err := os.Stat(abort); err != nil {
		if err := syscall.Mount("fusectl", dir, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mounting fusectl on %s: %w", dir, err)
		}
		defer syscall.Unmount(dir, 0)
	}
	return os.WriteFile(abort, []byte("1"), 0)
}

// refuse counts a request refused after the cut.
func (f *FS) refuse() syscall.Errno {
	f.mu.Lock()
	f.stats.Failed++
	f.mu.Unlock()
	return syscall.EIO
}

func (f *FS) count(fn func(*Stats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}
