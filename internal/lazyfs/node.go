package lazyfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is the state of one backing inode: its inode number towards the
// kernel and, for a regular file once opened, its backing descriptor and
// overlay. It outlives the kernel's inodes (which the kernel may forget
// while the overlay still holds data).
type file struct {
	ino uint64 // towards the kernel

	mu sync.Mutex
	fd *os.File // the backing file, read-write; nil until first needed
	ov *overlay // nil until fd is set
}

// node is a file or directory of the mount.
type node struct {
	fs.Inode
	lfs *FS
	fl  *file // nil for the root
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeReader     = (*node)(nil)
	_ fs.NodeWriter     = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
	_ fs.NodeFlusher    = (*node)(nil)
	_ fs.NodeReleaser   = (*node)(nil)
	_ fs.NodeAllocater  = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeMknoder    = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
)

// rel is the node's path relative to the mount ("" for the root).
func (n *node) rel() string {
	p := n.Path(nil)
	if p == "." {
		return ""
	}
	return p
}

func (n *node) path() string { return filepath.Join(n.lfs.backing, n.rel()) }

func (n *node) child(name string) (rel, abs string) {
	rel = filepath.Join(n.rel(), name)
	return rel, filepath.Join(n.lfs.backing, rel)
}

// fileOf returns the state of the backing inode st describes.
func (f *FS) fileOf(st *syscall.Stat_t) *file {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := devIno{uint64(st.Dev), st.Ino}
	fl, ok := f.inodes[k]
	if !ok {
		f.nextIno++
		fl = &file{ino: f.nextIno}
		f.inodes[k] = fl
	}
	return fl
}

// forget drops the state of a backing inode that no name refers to any
// more, so that a new file that gets its inode number starts afresh.
func (f *FS) forget(st *syscall.Stat_t) {
	f.mu.Lock()
	delete(f.inodes, devIno{uint64(st.Dev), st.Ino})
	f.mu.Unlock()
}

func (n *node) newChild(ctx context.Context, st *syscall.Stat_t, out *fuse.EntryOut) *fs.Inode {
	fl := n.lfs.fileOf(st)
	ch := &node{lfs: n.lfs, fl: fl}
	n.lfs.fillAttr(fl, st, &out.Attr)
	out.Attr.Ino = fl.ino
	return n.NewInode(ctx, ch, fs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: fl.ino})
}

// fillAttr fills out from st, with the size the overlay gives.
func (f *FS) fillAttr(fl *file, st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	if fl == nil {
		return
	}
	out.Ino = fl.ino
	fl.mu.Lock()
	if fl.ov != nil {
		out.Size = uint64(fl.ov.size)
		out.Blocks = (out.Size + 511) / 512
	}
	fl.mu.Unlock()
}

// open sets up the backing descriptor and overlay of a regular file.
// fl.mu must be held.
func (fl *file) open(f *FS, path string) syscall.Errno {
	if fl.fd != nil {
		return 0
	}
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	fi, err := fd.Stat()
	if err != nil {
		fd.Close()
		return fs.ToErrno(err)
	}
	fl.fd, fl.ov = fd, newOverlay(fi.Size())
	f.mu.Lock()
	f.closers[fl] = struct{}{}
	f.mu.Unlock()
	return 0
}

// change runs fn, which is op, unless the power was cut, or an armed cut
// chooses to happen now.
func (f *FS) change(op Op, fn func() syscall.Errno) syscall.Errno {
	f.trigger(op)
	f.cutMu.RLock()
	defer f.cutMu.RUnlock()
	if f.cut {
		return f.refuse()
	}
	return fn()
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	_, abs := n.child(name)
	var st syscall.Stat_t
	if err := syscall.Lstat(abs, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, &st, out), 0
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	var err error
	if n.fl != nil {
		n.fl.mu.Lock()
		fd := n.fl.fd
		if fd != nil {
			err = syscall.Fstat(int(fd.Fd()), &st)
		}
		n.fl.mu.Unlock()
		if fd == nil {
			err = syscall.Lstat(n.path(), &st)
		}
	} else {
		err = syscall.Lstat(n.path(), &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	n.lfs.fillAttr(n.fl, &st, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	op := OpMeta
	if _, ok := in.GetSize(); ok {
		op = OpTruncate
	}
	errno := n.lfs.change(op, func() syscall.Errno {
		p := n.path()
		if m, ok := in.GetMode(); ok {
			if err := syscall.Chmod(p, m); err != nil {
				return fs.ToErrno(err)
			}
		}
		uid, uok := in.GetUID()
		gid, gok := in.GetGID()
		if uok || gok {
			u, g := -1, -1
			if uok {
				u = int(uid)
			}
			if gok {
				g = int(gid)
			}
			if err := syscall.Lchown(p, u, g); err != nil {
				return fs.ToErrno(err)
			}
		}
		mtime, mok := in.GetMTime()
		atime, aok := in.GetATime()
		if mok || aok {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
			if aok {
				ts[0] = unix.NsecToTimespec(atime.UnixNano())
			}
			if mok {
				ts[1] = unix.NsecToTimespec(mtime.UnixNano())
			}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fs.ToErrno(err)
			}
		}
		if size, ok := in.GetSize(); ok {
			if n.fl == nil || !n.IsFile() {
				return syscall.EISDIR
			}
			n.fl.mu.Lock()
			defer n.fl.mu.Unlock()
			if errno := n.fl.open(n.lfs, p); errno != 0 {
				return errno
			}
			n.fl.ov.truncate(int64(size))
			n.lfs.count(func(s *Stats) { s.Truncates++ })
		}
		return 0
	})
	if errno != 0 {
		return errno
	}
	return n.Getattr(ctx, fh, out)
}

// IsFile reports whether the node is a regular file.
func (n *node) IsFile() bool { return n.StableAttr().Mode == syscall.S_IFREG }

// handle is an open file: all state is the inode's.
type handle struct{}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.IsFile() {
		return nil, 0, syscall.EINVAL
	}
	n.fl.mu.Lock()
	errno := n.fl.open(n.lfs, n.path())
	n.fl.mu.Unlock()
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		errno := n.lfs.change(OpTruncate, func() syscall.Errno {
			n.fl.mu.Lock()
			n.fl.ov.truncate(0)
			n.fl.mu.Unlock()
			n.lfs.count(func(s *Stats) { s.Truncates++ })
			return 0
		})
		if errno != 0 {
			return nil, 0, errno
		}
	}
	// No FOPEN_KEEP_CACHE and no direct I/O: the kernel drops its cached
	// pages of the file at every open, and caches (and writes through)
	// pages while it is open, which mmap needs.
	return &handle{}, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	var ch *fs.Inode
	errno := n.lfs.change(OpCreate, func() syscall.Errno {
		rel, abs := n.child(name)
		fd, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(mode&0o7777))
		if err != nil {
			return fs.ToErrno(err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(fd.Fd()), &st); err != nil {
			fd.Close()
			return fs.ToErrno(err)
		}
		n.lfs.created(rel)
		fl := n.lfs.fileOf(&st)
		fl.mu.Lock()
		if fl.fd == nil {
			fl.fd, fl.ov = fd, newOverlay(0)
			n.lfs.mu.Lock()
			n.lfs.closers[fl] = struct{}{}
			n.lfs.mu.Unlock()
		} else {
			fd.Close()
		}
		fl.mu.Unlock()
		ch = n.newChild(ctx, &st, out)
		return 0
	})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, &handle{}, 0, 0
}

// created notes a name that a power cut removes unless its directory is
// synced first.
func (f *FS) created(rel string) {
	f.mu.Lock()
	f.pending[rel] = true
	f.mu.Unlock()
}

func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.fl.mu.Lock()
	defer n.fl.mu.Unlock()
	if errno := n.fl.open(n.lfs, n.path()); errno != 0 {
		return nil, errno
	}
	k, err := n.fl.ov.read(n.fl.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *node) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	errno := n.lfs.change(OpWrite, func() syscall.Errno {
		n.fl.mu.Lock()
		defer n.fl.mu.Unlock()
		if errno := n.fl.open(n.lfs, n.path()); errno != 0 {
			return errno
		}
		if err := n.fl.ov.write(n.fl.fd, data, off); err != nil {
			return fs.ToErrno(err)
		}
		return 0
	})
	if errno != 0 {
		return 0, errno
	}
	n.lfs.count(func(s *Stats) { s.Writes++; s.WriteBytes += int64(len(data)) })
	return uint32(len(data)), 0
}

// Fsync makes a file's data and size durable (fsync and fdatasync alike),
// or, on a directory, the names created in it.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if n.IsDir() {
		return n.lfs.change(OpFsyncDir, func() syscall.Errno {
			d, err := os.Open(n.path())
			if err != nil {
				return fs.ToErrno(err)
			}
			defer d.Close()
			if !n.lfs.opts.NoBackingSync {
				if err := d.Sync(); err != nil {
					return fs.ToErrno(err)
				}
			}
			n.lfs.synced(n.rel())
			return 0
		})
	}
	if n.lfs.opts.SyncDelay > 0 {
		time.Sleep(n.lfs.opts.SyncDelay)
	}
	return n.lfs.change(OpFsync, func() syscall.Errno {
		n.fl.mu.Lock()
		defer n.fl.mu.Unlock()
		if errno := n.fl.open(n.lfs, n.path()); errno != 0 {
			return errno
		}
		written, err := n.fl.ov.sync(n.fl.fd)
		if err == nil && !n.lfs.opts.NoBackingSync {
			err = n.fl.fd.Sync()
		}
		if err != nil {
			return fs.ToErrno(err)
		}
		n.lfs.mu.Lock()
		n.lfs.stats.Fsyncs++
		n.lfs.stats.FlushedBytes += written
		n.lfs.syncs = append(n.lfs.syncs, time.Now())
		n.lfs.mu.Unlock()
		return 0
	})
}

// synced makes the names created in directory dir durable.
func (f *FS) synced(dir string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.pending {
		if parent := filepath.Dir(name); parent == dir || (dir == "" && parent == ".") {
			delete(f.pending, name)
		}
	}
	f.stats.DirSyncs++
}

// Flush (close) syncs nothing.
func (n *node) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

// Release keeps the overlay: it belongs to the inode.
func (n *node) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

// Allocate grows the file (mode 0) or does nothing (FALLOC_FL_KEEP_SIZE:
// space is not modelled); other modes are not supported.
func (n *node) Allocate(ctx context.Context, fh fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	switch mode {
	case 0:
	case unix.FALLOC_FL_KEEP_SIZE:
		return 0
	default:
		return syscall.EOPNOTSUPP
	}
	return n.lfs.change(OpTruncate, func() syscall.Errno {
		n.fl.mu.Lock()
		defer n.fl.mu.Unlock()
		if errno := n.fl.open(n.lfs, n.path()); errno != 0 {
			return errno
		}
		if end := int64(off + size); end > n.fl.ov.size {
			n.fl.ov.truncate(end)
			n.lfs.count(func(s *Stats) { s.Truncates++ })
		}
		return 0
	})
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, err := os.ReadDir(n.path())
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		var mode uint32
		switch t := e.Type(); {
		case t.IsDir():
			mode = syscall.S_IFDIR
		case t.IsRegular():
			mode = syscall.S_IFREG
		case t&os.ModeSymlink != 0:
			mode = syscall.S_IFLNK
		}
		list = append(list, fuse.DirEntry{Name: e.Name(), Mode: mode})
	}
	return fs.NewListDirStream(list), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var ch *fs.Inode
	errno := n.lfs.change(OpCreate, func() syscall.Errno {
		rel, abs := n.child(name)
		if err := syscall.Mkdir(abs, mode); err != nil {
			return fs.ToErrno(err)
		}
		var errno syscall.Errno
		ch, errno = n.adopt(ctx, rel, abs, out)
		return errno
	})
	return ch, errno
}

// Unlink, Rmdir and Rename take effect in the backing directory at once:
// they are durable without a sync of the directory (see the package doc).
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, syscall.Unlink)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, syscall.Rmdir)
}

func (n *node) remove(name string, rm func(string) error) syscall.Errno {
	return n.lfs.change(OpRemove, func() syscall.Errno {
		rel, abs := n.child(name)
		var st syscall.Stat_t
		if err := syscall.Lstat(abs, &st); err != nil {
			return fs.ToErrno(err)
		}
		if err := rm(abs); err != nil {
			return fs.ToErrno(err)
		}
		if st.Nlink <= 1 || st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			n.lfs.forget(&st) // no name is left
		}
		n.lfs.mu.Lock()
		delete(n.lfs.pending, rel)
		n.lfs.mu.Unlock()
		return 0
	})
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	return n.lfs.change(OpRename, func() syscall.Errno {
		oldRel, oldAbs := n.child(name)
		newRel, newAbs := np.child(newName)
		var target syscall.Stat_t
		replaced := syscall.Lstat(newAbs, &target) == nil
		if err := unix.Renameat2(unix.AT_FDCWD, oldAbs, unix.AT_FDCWD, newAbs, uint(flags)); err != nil {
			return fs.ToErrno(err)
		}
		if replaced && flags&unix.RENAME_EXCHANGE == 0 && target.Nlink <= 1 {
			n.lfs.forget(&target)
		}
		// A pending name moves with its file, and so do pending names
		// below a directory that moves.
		n.lfs.mu.Lock()
		defer n.lfs.mu.Unlock()
		moved := map[string]bool{}
		for p := range n.lfs.pending {
			switch {
			case p == oldRel:
				moved[newRel] = true
			case strings.HasPrefix(p, oldRel+"/"):
				moved[newRel+p[len(oldRel):]] = true
			default:
				continue
			}
			delete(n.lfs.pending, p)
		}
		if flags&unix.RENAME_EXCHANGE == 0 {
			delete(n.lfs.pending, newRel) // the replaced name is gone
		}
		for p := range moved {
			n.lfs.pending[p] = true
		}
		return 0
	})
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.lfs.backing, &s); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

// Link makes a hard link: a new name, pending like a created one, for the
// same inode and so the same overlay.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.fl == nil {
		return nil, syscall.EXDEV
	}
	var ch *fs.Inode
	errno := n.lfs.change(OpCreate, func() syscall.Errno {
		rel, abs := n.child(name)
		if err := syscall.Link(t.path(), abs); err != nil {
			return fs.ToErrno(err)
		}
		var errno syscall.Errno
		ch, errno = n.adopt(ctx, rel, abs, out)
		return errno
	})
	return ch, errno
}

// adopt records the new entry rel (backing path abs) as created, so that
// it is pending until its directory is synced, and returns its inode.
func (n *node) adopt(ctx context.Context, rel, abs string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.lfs.created(rel)
	var st syscall.Stat_t
	if err := syscall.Lstat(abs, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, &st, out), 0
}

// Special files and symbolic links are not supported.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return nil, syscall.EINVAL
}
