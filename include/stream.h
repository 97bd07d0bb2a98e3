/* SPDX-License-Identifier: MIT */
/*
 * The VM state stream: one format for snapshot files and live migration
 * (and, section by section, replication epochs).  Documented in
 * docs/STATE_FORMAT.md.
 *
 *   header   "VMMSTRM1", version, RAM size, vCPU count
 *   section  type, length, payload, XXH3-64 of the payload
 *   ...      CONFIG first (what VM to build), then any number of MEMORY
 *            sections (page runs; zero pages skipped), then STATE (the
 *            state tree), then END
 *
 * All integers are little-endian.  A reader checks each section's length
 * against a bound before reading it and its hash before using it; memory
 * runs are checked against the RAM size.  Readers and writers work on a
 * file descriptor (a file or a socket): short reads and writes are
 * retried, EOF in the middle of anything is -EPIPE.
 */
#ifndef VMM_STREAM_H
#define VMM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define STREAM_MAGIC	     "VMMSTRM1"
#define STREAM_VERSION	     1
#define STREAM_MAX_TREE	     (64u << 20) /* CONFIG and STATE trees */
#define STREAM_RUN_MAX_PAGES 256	 /* pages per run: bounded reads, bounded buffers */

enum stream_section {
	STREAM_SEC_CONFIG = 1,	  /* state tree: the machine (RAM, vCPUs, devices, backends) */
	STREAM_SEC_MEMORY = 2,	  /* runs of {u64 first page, u32 count, u32 0} + count pages */
	STREAM_SEC_STATE = 3,	  /* state tree: vCPUs, in-kernel irqchip and clocks, devices */
	STREAM_SEC_END = 4,	  /* no payload: the stream is complete */
	STREAM_SEC_EPOCH = 5,	  /* replication: u64 epoch number; the epoch's sections follow */
	STREAM_SEC_DISK = 6,	  /* replication: the epoch's disk writes (epoch.h) */
	STREAM_SEC_EPOCH_END = 7, /* replication: u64 epoch number; the epoch is complete */
	STREAM_SEC_HEARTBEAT = 8, /* replication: u64 last epoch sent; the primary is alive */
	STREAM_SEC_SHUTDOWN = 9,  /* replication: the guest ended on purpose; do not take over */
	STREAM_SEC_RELEASE = 10,  /* replication: u64 epoch; the primary lets its output go now */
	STREAM_SEC_SESSION = 11,  /* replication: u64 id of this primary-standby session */
	STREAM_SEC_DROPPED = 12, /* replication: the primary gave up on this standby; no takeover */
	STREAM_SEC_EMITTED = 13, /* replication: u64 epoch; its output is out (after RELEASE) */
};

#define STREAM_MAX_DISK_LOG (1ULL << 30) /* one epoch's disk writes */

/* Pages copied out of guest RAM (an epoch's staging): index i of RAM at data + i * 4096. */
struct page_list {
	uint64_t *index;
	uint8_t *data;
	size_t n, cap;
	size_t max; /* refuse to grow beyond this many pages (0: no limit) */
};

struct stream_header {
	char magic[8];
	uint32_t version;
	uint32_t ncpus;
	uint64_t ram_size;
	uint64_t reserved[2];
};

struct stream_stats {
	uint64_t bytes;	     /* everything written or read */
	uint64_t pages;	     /* pages carried in MEMORY sections */
	uint64_t zero_pages; /* pages skipped because they were all zero */
	uint64_t pause_ns; /* how long the guest was stopped for it (set by the VM-level callers) */
	uint64_t limit_bps; /* writers: at most this many bytes per second (0: no limit) */
	uint64_t limit_t0_ns, limit_bytes; /* the limiter's own accounting */
};

/* Header for a VM of ram_size bytes and ncpus vCPUs.  0 or -errno. */
int stream_write_header(int fd, uint64_t ram_size, uint32_t ncpus, struct stream_stats *st);

/* One section with its payload and hash.  0 or -errno. */
int stream_write_section(int fd, enum stream_section type, const void *data, size_t len,
			 struct stream_stats *st);

/* stream_write_memory flags */
#define STREAM_MEM_SEND_ZERO                                                                       \
	(1u << 0)		  /* send dirty pages even if all zero (they may overwrite)        \
				   */
#define STREAM_MEM_LIVE (1u << 1) /* the guest runs: copy each run before hashing and sending */

/*
 * A MEMORY section with the pages of mem whose bit is set in pages (one
 * bit per page of RAM; NULL: every page), skipping all-zero pages unless
 * STREAM_MEM_SEND_ZERO (a dirty page that became zero must still overwrite
 * the other side's copy).  With STREAM_MEM_LIVE the bytes hashed are the
 * bytes sent even while the guest writes the page (a later pass sends it
 * again).  0 or -errno.
 */
int stream_write_memory(int fd, const struct guest_mem *mem, const uint64_t *pages, unsigned flags,
			struct stream_stats *st);

/* A MEMORY section of the pages in list (in index order), zero pages included.  0 or -errno. */
int stream_write_page_list(int fd, const struct page_list *list, struct stream_stats *st);

/*
 * Read a MEMORY payload of len bytes into list (appending), checking runs
 * against ram_pages and the hash; RAM is not touched.  0, -EINVAL,
 * -ENOSPC (over list->max), -EPIPE, -errno.
 */
int stream_read_memory_list(int fd, uint64_t len, uint64_t ram_pages, struct page_list *list,
			    struct stream_stats *st);

/* Append page index (4096 bytes from src) to list.  0, -ENOMEM, -ENOSPC. */
int page_list_add(struct page_list *list, uint64_t index, const void *src);
/*
 * Make the list n pages long (room grown as needed), for the caller to fill
 * index[] and data (several threads may copy pages at once).  0, -ENOMEM,
 * -ENOSPC (more than max).
 */
int page_list_resize(struct page_list *list, size_t n);
/* Copy every page of list into mem (marking it dirty). */
void page_list_apply(const struct page_list *list, struct guest_mem *mem);
void page_list_clear(struct page_list *list);
void page_list_free(struct page_list *list);

/* Read and check a header: magic, version, sizes in range.  0, -EINVAL, -EPIPE, -errno. */
int stream_read_header(int fd, struct stream_header *h, struct stream_stats *st);

/*
 * Read the next section's type and length (length checked against the
 * type's bound).  The caller then reads the payload with
 * stream_read_payload or stream_read_memory.  0, -EINVAL, -EPIPE, -errno.
 */
int stream_read_section(int fd, uint32_t *type, uint64_t *len, struct stream_stats *st);

/* Read a tree payload of len bytes (malloc'd into *out) and check its hash. */
int stream_read_payload(int fd, uint64_t len, void **out, struct stream_stats *st);

/*
 * Read a MEMORY payload of len bytes straight into mem (pages marked
 * dirty), checking every run against the RAM and the hash at the end.  On
 * -EINVAL (bad run, bad hash) the RAM holds partial data: the caller must
 * not run the VM.  0, -EINVAL, -EPIPE, -errno.
 */
int stream_read_memory(int fd, uint64_t len, struct guest_mem *mem, struct stream_stats *st);

/* Human-readable name of a section type (for messages). */
const char *stream_section_name(uint32_t type);

#endif
