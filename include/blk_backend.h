/* SPDX-License-Identifier: MIT */
/*
 * Block backends: where a virtio-blk disk's bytes live.  The device model
 * calls these from its worker threads, several at once, so every operation
 * must be thread-safe (positioned I/O, no shared file offset).  Offsets and
 * lengths are in bytes and already checked against the size by the caller.
 *
 * The one implementation here is a raw image file or block device
 * (blk_backend_open_file); the ops table exists so that tests can block or
 * fail I/O at will and so that replication can later wrap the file backend
 * to mirror writes to the standby.
 *
 * Synchronous positioned I/O on worker threads rather than io_uring: the
 * image normally sits in the host page cache, where preadv/pwritev straight
 * into guest buffers cost a copy and a syscall, as io_uring would; it needs
 * no extra library, and it works on every kernel and in seccomp'd
 * environments where io_uring is often disabled.
 */
#ifndef VMM_BLK_BACKEND_H
#define VMM_BLK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_SECTOR_SIZE 512

struct blk_backend;

struct blk_backend_ops {
	/*
	 * Fill/write all of iov at byte offset off.  iov may be modified (the
	 * short-transfer loop advances it); iovcnt <= IOV_MAX.  0 or -errno;
	 * a short transfer that cannot make progress (end of file) is -EIO.
	 */
	int (*read)(struct blk_backend *be, struct iovec *iov, int iovcnt, uint64_t off);
	int (*write)(struct blk_backend *be, struct iovec *iov, int iovcnt, uint64_t off);
	/* Everything written so far reaches stable storage (fdatasync).  0 or -errno. */
	int (*flush)(struct blk_backend *be);
	/* Hint that the range is unused.  0, -EOPNOTSUPP (not possible here), or -errno. */
	int (*discard)(struct blk_backend *be, uint64_t off, uint64_t len);
	/* The range reads back as zeroes afterwards; unmap: it may be deallocated.  0 or -errno. */
	int (*write_zeroes)(struct blk_backend *be, uint64_t off, uint64_t len, bool unmap);
	/* Release everything (the backend itself included). */
	void (*close)(struct blk_backend *be);
};

struct blk_backend {
	const struct blk_backend_ops *ops;
	uint64_t size; /* bytes, a multiple of BLK_SECTOR_SIZE, fixed */
	bool readonly; /* write, discard and write_zeroes must not be called */
};

/*
 * Open a raw image: a regular file or a block device, O_RDWR or O_RDONLY.
 * On error prints one clear line (pr_err) naming the path and returns
 * -errno: -ENOENT/-EACCES/... from open, -EINVAL for something that is not
 * a regular file or block device or whose size is not a multiple of 512.
 */
int blk_backend_open_file(struct blk_backend **out, const char *path, bool readonly);

/* Is [off, off + len) within the backend?  No overflow for any off and len. */
static inline bool blk_backend_in_range(const struct blk_backend *be, uint64_t off, uint64_t len)
{
	return off <= be->size && len <= be->size - off;
}

/*
 * Write all len bytes of data at byte offset off through be's write op (a
 * flat buffer rather than guest iovecs: the standby's replica applying a
 * journal entry).  The caller checked the range and that be is writable.
 * 0 or -errno.
 */
int blk_backend_pwrite(struct blk_backend *be, uint64_t off, const void *data, uint64_t len);

static inline void blk_backend_close(struct blk_backend *be)
{
	if (be)
		be->ops->close(be);
}

#endif
