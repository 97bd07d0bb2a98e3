// SPDX-License-Identifier: MIT
/* A replication epoch: staging, encoding and checking its pages, disk writes and state. */
#include "epoch.h"

#include <endian.h>
#include <errno.h>
#include <libfdt.h>
#include <linux/virtio_blk.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "state.h"

struct wire_disk {
	uint32_t disk;
	uint32_t type;
	uint64_t offset;
	uint64_t length;
};

static int disk_reserve(struct epoch *e, size_t more)
{
	if (e->disk_len + more <= e->disk_cap)
		return 0;
	size_t ncap = e->disk_cap ? e->disk_cap : 64 << 10;

	while (ncap < e->disk_len + more)
		ncap *= 2;
	uint8_t *n = realloc(e->disk, ncap);

	if (!n)
		return -ENOMEM;
	e->disk = n;
	e->disk_cap = ncap;
	return 0;
}

int epoch_disk_add(struct epoch *e, unsigned disk, uint32_t type, uint64_t offset, uint64_t len,
		   const struct iovec *iov, int iovcnt)
{
	struct wire_disk w = {htole32(disk), htole32(type), htole64(offset), htole64(len)};
	size_t data = type == VIRTIO_BLK_T_OUT ? len : 0, off;
	int ret = disk_reserve(e, sizeof(w) + data);

	if (ret)
		return ret;
	memcpy(e->disk + e->disk_len, &w, sizeof(w));
	off = e->disk_len + sizeof(w);
	for (int i = 0; i < iovcnt && data; i++) {
		size_t n = iov[i].iov_len < data ? iov[i].iov_len : data;

		memcpy(e->disk + off, iov[i].iov_base, n);
		off += n;
		data -= n;
	}
	if (data) /* the iovecs held less than len: keep the log well-formed */
		memset(e->disk + off, 0, data), off += data;
	e->disk_len = off;
	e->disk_entries++;
	return 0;
}

/* One pass over the entries; apply NULL only checks. */
static int disk_walk(const uint8_t *p, size_t len, unsigned nr_disks,
		     int (*apply)(void *, unsigned, uint32_t, uint64_t, const void *, uint64_t),
		     void *opaque)
{
	size_t off = 0;

	while (off < len) {
		struct wire_disk w;
		uint64_t length, data;
		uint32_t type;

		if (len - off < sizeof(w))
			return -EINVAL;
		memcpy(&w, p + off, sizeof(w));
		off += sizeof(w);
		type = le32toh(w.type);
		length = le64toh(w.length);
		if (le32toh(w.disk) >= nr_disks || length == 0 ||
		    (type != VIRTIO_BLK_T_OUT && type != VIRTIO_BLK_T_DISCARD &&
		     type != VIRTIO_BLK_T_WRITE_ZEROES))
			return -EINVAL;
		data = type == VIRTIO_BLK_T_OUT ? length : 0;
		if (data > len - off)
			return -EINVAL;
		if (apply) {
			int ret = apply(opaque, le32toh(w.disk), type, le64toh(w.offset),
					data ? p + off : NULL, length);
			if (ret)
				return ret;
		}
		off += data;
	}
	return 0;
}

int epoch_disk_foreach(const uint8_t *disk, size_t len, unsigned nr_disks,
		       int (*apply)(void *opaque, unsigned disk, uint32_t type, uint64_t offset,
				    const void *data, uint64_t len),
		       void *opaque)
{
	if (disk_walk(disk, len, nr_disks, NULL, NULL)) {
		pr_err("replication: the epoch's disk log is malformed");
		return -EINVAL;
	}
	return disk_walk(disk, len, nr_disks, apply, opaque);
}

static int send_u64(int fd, enum stream_section type, uint64_t v, struct stream_stats *st)
{
	uint64_t le = htole64(v);

	return stream_write_section(fd, type, &le, sizeof(le), st);
}

int epoch_send(int fd, const struct epoch *e, struct stream_stats *st)
{
	int ret = send_u64(fd, STREAM_SEC_EPOCH, e->seq, st);

	if (!ret)
		ret = stream_write_page_list(fd, &e->pages, st);
	if (!ret)
		ret = stream_write_section(fd, STREAM_SEC_DISK, e->disk, e->disk_len, st);
	if (!ret)
		ret = stream_write_section(fd, STREAM_SEC_STATE, e->state, e->state_len, st);
	if (!ret)
		ret = send_u64(fd, STREAM_SEC_EPOCH_END, e->seq, st);
	return ret;
}

int epoch_read_u64(int fd, uint64_t len, uint64_t *v, struct stream_stats *st)
{
	void *p = NULL;
	int ret;

	if (len != sizeof(*v))
		return -EINVAL;
	ret = stream_read_payload(fd, len, &p, st);
	if (!ret) {
		memcpy(v, p, sizeof(*v));
		*v = le64toh(*v);
	}
	free(p);
	return ret;
}

int epoch_recv(int fd, uint64_t seq, uint64_t ram_pages, struct epoch *e, struct stream_stats *st)
{
	bool have_mem = false, have_disk = false;
	uint32_t type;
	uint64_t len, end_seq;
	int ret;

	epoch_clear(e);
	e->seq = seq;
	for (;;) {
		ret = stream_read_section(fd, &type, &len, st);
		if (ret)
			return ret;
		switch (type) {
		case STREAM_SEC_MEMORY:
			if (have_mem)
				goto order;
			have_mem = true;
			ret = stream_read_memory_list(fd, len, ram_pages, &e->pages, st);
			break;
		case STREAM_SEC_DISK:
			if (have_disk)
				goto order;
			have_disk = true;
			free(e->disk);
			e->disk = NULL;
			e->disk_cap = 0;
			ret = stream_read_payload(fd, len, (void **)&e->disk, st);
			if (!ret)
				e->disk_len = e->disk_cap = len;
			break;
		case STREAM_SEC_STATE:
			if (e->state)
				goto order;
			ret = stream_read_payload(fd, len, &e->state, st);
			if (!ret) {
				e->state_len = len;
				if (state_tree_check(e->state, len)) {
					pr_err(
					    "replication: epoch %llu: the state tree is malformed",
					    (unsigned long long)seq);
					ret = -EINVAL;
				}
			}
			break;
		case STREAM_SEC_EPOCH_END:
			ret = epoch_read_u64(fd, len, &end_seq, st);
			if (ret)
				return ret;
			if (end_seq != seq || !have_mem || !have_disk || !e->state) {
				pr_err("replication: epoch %llu ends as %llu or incomplete",
				       (unsigned long long)seq, (unsigned long long)end_seq);
				return -EINVAL;
			}
			return 0;
		default:
			goto order;
		}
		if (ret)
			return ret;
	}
order:
	pr_err("replication: epoch %llu: unexpected %s section", (unsigned long long)seq,
	       stream_section_name(type));
	return -EINVAL;
}

void epoch_clear(struct epoch *e)
{
	page_list_clear(&e->pages);
	e->disk_len = 0;
	e->disk_entries = 0;
	free(e->state);
	e->state = NULL;
	e->state_len = 0;
}

void epoch_free(struct epoch *e)
{
	epoch_clear(e);
	page_list_free(&e->pages);
	free(e->disk);
	e->disk = NULL;
	e->disk_cap = 0;
}
