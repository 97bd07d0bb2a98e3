// SPDX-License-Identifier: MIT
/* Raw image files and block devices: positioned I/O, fdatasync, fallocate. */
#include "blk_backend.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZERO_CHUNK (64 * 1024)

struct blk_file {
	struct blk_backend be;
	int fd;
	bool is_blockdev;
};

static struct blk_file *to_file(struct blk_backend *be)
{
	return (struct blk_file *)be;
}

/* Drop the first n bytes of the vector; returns the new count. */
static int iov_advance(struct iovec **iovp, int iovcnt, size_t n)
{
	struct iovec *iov = *iovp;

	while (iovcnt && n >= iov->iov_len) {
		n -= iov->iov_len;
		iov++;
		iovcnt--;
	}
	if (iovcnt) {
		iov->iov_base = (uint8_t *)iov->iov_base + n;
		iov->iov_len -= n;
	}
	*iovp = iov;
	return iovcnt;
}

static int file_rw(struct blk_backend *be, struct iovec *iov, int iovcnt, uint64_t off, bool write)
{
	int fd = to_file(be)->fd;
	ssize_t r;

	/* Leading empty buffers would make a 0 return look like end of file. */
	iovcnt = iov_advance(&iov, iovcnt, 0);
	while (iovcnt) {
		r = write ? pwritev(fd, iov, iovcnt, (off_t)off)
			  : preadv(fd, iov, iovcnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* the image shrank under us */
		off += (uint64_t)r;
		iovcnt = iov_advance(&iov, iovcnt, (size_t)r);
	}
	return 0;
}

static int file_read(struct blk_backend *be, struct iovec *iov, int iovcnt, uint64_t off)
{
	return file_rw(be, iov, iovcnt, off, false);
}

static int file_write(struct blk_backend *be, struct iovec *iov, int iovcnt, uint64_t off)
{
	return file_rw(be, iov, iovcnt, off, true);
}

static int file_flush(struct blk_backend *be)
{
	return fdatasync(to_file(be)->fd) ? -errno : 0;
}

static int falloc(int fd, int mode, uint64_t off, uint64_t len)
{
	int r;

	do {
		r = fallocate(fd, mode, (off_t)off, (off_t)len);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	/* Filesystems and devices that cannot do it say so in several ways. */
	if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL || errno == ENODEV)
		return -EOPNOTSUPP;
	return -errno;
}

static int file_discard(struct blk_backend *be, uint64_t off, uint64_t len)
{
	struct blk_file *f = to_file(be);

	if (f->is_blockdev) {
		uint64_t range[2] = {off, len};

		if (ioctl(f->fd, BLKDISCARD, range) == 0)
			return 0;
		return errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL ? -EOPNOTSUPP
										 : -errno;
	}
	return falloc(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

static int write_zero_bytes(int fd, uint64_t off, uint64_t len)
{
	uint8_t *zero = calloc(1, ZERO_CHUNK);
	int ret = 0;

	if (!zero)
		return -ENOMEM;
	while (len && !ret) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
		ssize_t r = pwrite(fd, zero, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			ret = -errno;
		else if (r == 0)
			ret = -EIO;
		else
			off += (uint64_t)r, len -= (uint64_t)r;
	}
	free(zero);
	return ret;
}

static int file_write_zeroes(struct blk_backend *be, uint64_t off, uint64_t len, bool unmap)
{
	int fd = to_file(be)->fd, ret = -EOPNOTSUPP;

	/* Punching a hole reads back as zeroes on files and on block devices alike. */
	if (unmap)
		ret = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	if (ret == -EOPNOTSUPP)
		ret = falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
	if (ret == -EOPNOTSUPP)
		ret = write_zero_bytes(fd, off, len);
	return ret;
}

static void file_close(struct blk_backend *be)
{
	struct blk_file *f = to_file(be);

	close(f->fd);
	free(f);
}

static const struct blk_backend_ops file_ops = {
    .read = file_read,
    .write = file_write,
    .flush = file_flush,
    .discard = file_discard,
    .write_zeroes = file_write_zeroes,
    .close = file_close,
};

int blk_backend_pwrite(struct blk_backend *be, uint64_t off, const void *data, uint64_t len)
{
	/* The write ops take a mutable vector (they advance it), never the bytes. */
	struct iovec iov = {.iov_base = (void *)(uintptr_t)data, .iov_len = (size_t)len};

	if (!len)
		return 0;
	return be->ops->write(be, &iov, 1, off);
}

int blk_backend_open_file(struct blk_backend **out, const char *path, bool readonly)
{
	struct blk_file *f;
	struct stat st;
	uint64_t size;
	int fd, ret;

	fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (!readonly && (errno == EACCES || errno == EROFS || errno == EPERM))
			pr_err("disk %s: cannot open for writing: %s (add ,readonly?)", path,
			       strerror(errno));
		else
			pr_err("disk %s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		pr_err("disk %s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			ret = -errno;
			pr_err("disk %s: cannot get the device size: %s", path, strerror(errno));
			goto fail;
		}
	} else {
		ret = -EINVAL;
		pr_err("disk %s: not a regular file or block device", path);
		goto fail;
	}
	if (size % BLK_SECTOR_SIZE) {
		ret = -EINVAL;
		pr_err("disk %s: size %llu is not a multiple of %d bytes", path,
		       (unsigned long long)size, BLK_SECTOR_SIZE);
		goto fail;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		ret = -ENOMEM;
		goto fail;
	}
	f->be.ops = &file_ops;
	f->be.size = size;
	f->be.readonly = readonly;
	f->fd = fd;
	f->is_blockdev = S_ISBLK(st.st_mode);
	*out = &f->be;
	return 0;
fail:
	close(fd);
	return ret;
}
