// SPDX-License-Identifier: MIT
/* The VM state stream: headers, hashed sections and page runs over a file descriptor. */
#include "stream.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"

#define PAGE GUEST_PAGE_SIZE

struct wire_section {
	uint32_t type;
	uint32_t reserved;
	uint64_t length;
};

struct wire_run {
	uint64_t first_page;
	uint32_t count;
	uint32_t reserved;
};

struct page_run {
	uint64_t first, count;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Keep the average rate since the first write at or under st->limit_bps. */
static void throttle(struct stream_stats *st, uint64_t bytes)
{
	uint64_t now = mono_ns(), due;

	if (!st->limit_t0_ns)
		st->limit_t0_ns = now;
	st->limit_bytes += bytes;
	due = st->limit_t0_ns + (uint64_t)((double)st->limit_bytes * 1e9 / (double)st->limit_bps);
	if (due > now) {
		struct timespec ts = {.tv_sec = (time_t)((due - now) / 1000000000ULL),
				      .tv_nsec = (long)((due - now) % 1000000000ULL)};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

/* Write all of the iovecs (retrying short writes and EINTR).  0 or -errno. */
static int write_iov(int fd, struct iovec *iov, int n, struct stream_stats *st)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (st)
			st->bytes += (uint64_t)w;
		if (st && st->limit_bps)
			throttle(st, (uint64_t)w);
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len, struct stream_stats *st)
{
	struct iovec iov = {(void *)buf, len};

	return write_iov(fd, &iov, 1, st);
}

/* Read exactly len bytes; EOF first is -EPIPE.  0 or -errno. */
static int read_all(int fd, void *buf, size_t len, struct stream_stats *st)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = read(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		p += r;
		len -= (size_t)r;
		if (st)
			st->bytes += (uint64_t)r;
	}
	return 0;
}

int stream_write_header(int fd, uint64_t ram_size, uint32_t ncpus, struct stream_stats *st)
{
	struct stream_header h = {
	    .version = htole32(STREAM_VERSION),
	    .ncpus = htole32(ncpus),
	    .ram_size = htole64(ram_size),
	};

	memcpy(h.magic, STREAM_MAGIC, sizeof(h.magic));
	return write_all(fd, &h, sizeof(h), st);
}

int stream_write_section(int fd, enum stream_section type, const void *data, size_t len,
			 struct stream_stats *st)
{
	struct wire_section s = {.type = htole32(type), .length = htole64(len)};
	uint64_t hash = htole64(XXH3_64bits(data, len));
	struct iovec iov[3] = {{&s, sizeof(s)}, {(void *)data, len}, {&hash, sizeof(hash)}};

	return write_iov(fd, iov, 3, st);
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

static bool page_wanted(const uint64_t *pages, uint64_t i)
{
	return !pages || (pages[i / 64] >> (i % 64)) & 1;
}

static int add_page(struct page_run **runs, size_t *n, size_t *cap, uint64_t i)
{
	struct page_run *last = *n ? &(*runs)[*n - 1] : NULL;

	if (last && last->first + last->count == i && last->count < STREAM_RUN_MAX_PAGES) {
		last->count++;
		return 0;
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct page_run *r = realloc(*runs, ncap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		*runs = r;
		*cap = ncap;
	}
	(*runs)[(*n)++] = (struct page_run){i, 1};
	return 0;
}

/*
 * The end of the memfd's data extent starting at or after page *i (pages
 * up to the returned index hold data; *i moves to its start).  Holes were
 * never written: they read as zero and are skipped without touching them,
 * which would allocate them.
 */
static uint64_t next_extent(const struct guest_mem *mem, uint64_t *i, uint64_t npages)
{
	off_t data = lseek(mem->memfd, (off_t)(*i * PAGE), SEEK_DATA);
	off_t hole;

	if (data < 0) {
		/* ENXIO: no data after *i.  Any other error: scan everything. */
		if (errno == ENXIO)
			*i = npages;
		return npages;
	}
	hole = lseek(mem->memfd, data, SEEK_HOLE);
	*i = (uint64_t)data / PAGE;
	if (hole < 0 || (uint64_t)hole / PAGE > npages)
		return npages;
	return ((uint64_t)hole + PAGE - 1) / PAGE;
}

/* The runs to send: wanted (and, unless send_zero, non-zero) pages, at most RUN_MAX long. */
static int collect_runs(const struct guest_mem *mem, const uint64_t *pages, bool send_zero,
			struct page_run **out, size_t *nr, struct stream_stats *st)
{
	uint64_t npages = mem->ram_size / PAGE, i = 0, extent_end = 0;
	struct page_run *runs = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	while (!ret && i < npages) {
		if (pages && !pages[i / 64] && i % 64 == 0) {
			i += 64; /* a whole word of clean pages */
			continue;
		}
		if (!page_wanted(pages, i)) {
			i++;
			continue;
		}
		if (!send_zero && i >= extent_end) {
			uint64_t from = i;

			extent_end = next_extent(mem, &i, npages);
			if (st)
				st->zero_pages += i - from; /* hole pages are zero pages */
			if (i >= npages)
				break;
			if (!page_wanted(pages, i))
				continue;
		}
		if (!send_zero && page_is_zero(mem->host_base + i * PAGE)) {
			if (st)
				st->zero_pages++;
			i++;
			continue;
		}
		ret = add_page(&runs, &n, &cap, i);
		i++;
	}
	if (ret) {
		free(runs);
		return ret;
	}
	*out = runs;
	*nr = n;
	return 0;
}

int stream_write_memory(int fd, const struct guest_mem *mem, const uint64_t *pages, unsigned flags,
			struct stream_stats *st)
{
	bool live = flags & STREAM_MEM_LIVE;
	struct page_run *runs;
	uint8_t *bounce = NULL;
	size_t nr, i;
	uint64_t len = 0, hash;
	XXH3_state_t *xs;
	int ret;

	ret = collect_runs(mem, pages, flags & STREAM_MEM_SEND_ZERO, &runs, &nr, st);
	if (ret)
		return ret;
	for (i = 0; i < nr; i++)
		len += sizeof(struct wire_run) + runs[i].count * PAGE;
	xs = XXH3_createState();
	if (live)
		bounce = malloc(STREAM_RUN_MAX_PAGES * PAGE);
	if (!xs || (live && !bounce)) {
		XXH3_freeState(xs);
		free(runs);
		return -ENOMEM;
	}
	XXH3_64bits_reset(xs);
	struct wire_section s = {.type = htole32(STREAM_SEC_MEMORY), .length = htole64(len)};
	ret = write_all(fd, &s, sizeof(s), st);
	for (i = 0; !ret && i < nr; i++) {
		struct wire_run r = {.first_page = htole64(runs[i].first),
				     .count = htole32((uint32_t)runs[i].count)};
		uint8_t *data = mem->host_base + runs[i].first * PAGE;

		if (live)
			data = memcpy(bounce, data, runs[i].count * PAGE);
		struct iovec iov[2] = {{&r, sizeof(r)}, {data, runs[i].count * PAGE}};

		XXH3_64bits_update(xs, &r, sizeof(r));
		XXH3_64bits_update(xs, data, runs[i].count * PAGE);
		ret = write_iov(fd, iov, 2, st);
		if (st)
			st->pages += runs[i].count;
	}
	hash = htole64(XXH3_64bits_digest(xs));
	if (!ret)
		ret = write_all(fd, &hash, sizeof(hash), st);
	XXH3_freeState(xs);
	free(bounce);
	free(runs);
	return ret;
}

int stream_read_header(int fd, struct stream_header *h, struct stream_stats *st)
{
	int ret = read_all(fd, h, sizeof(*h), st);

	if (ret)
		return ret;
	h->version = le32toh(h->version);
	h->ncpus = le32toh(h->ncpus);
	h->ram_size = le64toh(h->ram_size);
	if (memcmp(h->magic, STREAM_MAGIC, sizeof(h->magic))) {
		pr_err("not a vmm state stream (bad magic)");
		return -EINVAL;
	}
	if (h->reserved[0] || h->reserved[1]) {
		pr_err("state stream: header with reserved bits set");
		return -EINVAL;
	}
	if (h->version != STREAM_VERSION) {
		pr_err("state stream version %u; this vmm reads version %u", h->version,
		       STREAM_VERSION);
		return -EINVAL;
	}
	if (h->ncpus == 0 || h->ncpus > 254 || h->ram_size < (2ULL << 20) ||
	    h->ram_size > (1ULL << 40) || h->ram_size % PAGE) {
		pr_err("state stream: implausible machine (%u vCPUs, %llu bytes of RAM)", h->ncpus,
		       (unsigned long long)h->ram_size);
		return -EINVAL;
	}
	return 0;
}

int stream_read_section(int fd, uint32_t *type, uint64_t *len, struct stream_stats *st)
{
	struct wire_section s;
	int ret = read_all(fd, &s, sizeof(s), st);

	if (ret)
		return ret;
	*type = le32toh(s.type);
	*len = le64toh(s.length);
	if (s.reserved) {
		pr_err("state stream: %s section with reserved bits set",
		       stream_section_name(*type));
		return -EINVAL;
	}
	switch (*type) {
	case STREAM_SEC_CONFIG:
	case STREAM_SEC_STATE:
		if (*len > STREAM_MAX_TREE)
			goto too_long;
		return 0;
	case STREAM_SEC_MEMORY:
		if (*len > (1ULL << 41))
			goto too_long;
		return 0;
	case STREAM_SEC_DISK:
		if (*len > STREAM_MAX_DISK_LOG)
			goto too_long;
		return 0;
	case STREAM_SEC_EPOCH:
	case STREAM_SEC_EPOCH_END:
	case STREAM_SEC_HEARTBEAT:
	case STREAM_SEC_RELEASE:
	case STREAM_SEC_SESSION:
	case STREAM_SEC_EMITTED:
		if (*len != 8)
			goto too_long;
		return 0;
	case STREAM_SEC_SHUTDOWN:
	case STREAM_SEC_DROPPED:
		if (*len)
			goto too_long;
		return 0;
	case STREAM_SEC_END:
		if (*len)
			goto too_long;
		return 0;
	default:
		pr_err("state stream: unknown section type %u", *type);
		return -EINVAL;
	}
too_long:
	pr_err("state stream: %s section of %llu bytes is too long", stream_section_name(*type),
	       (unsigned long long)*len);
	return -EINVAL;
}

static int read_hash(int fd, uint64_t *hash, struct stream_stats *st)
{
	int ret = read_all(fd, hash, sizeof(*hash), st);

	*hash = le64toh(*hash);
	return ret;
}

int stream_read_payload(int fd, uint64_t len, void **out, struct stream_stats *st)
{
	uint64_t hash, have = 0, cap = len < (1u << 20) ? len : (1u << 20);
	uint8_t *buf = malloc(cap ? cap : 1);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	/* Grow as the bytes arrive: a length in a header alone never buys memory. */
	while (!ret && have < len) {
		uint64_t chunk = len - have < (1u << 20) ? len - have : (1u << 20);

		if (have + chunk > cap) {
			uint64_t ncap = cap * 2 > have + chunk ? cap * 2 : have + chunk;
			uint8_t *n = realloc(buf, ncap < len ? ncap : len);

			if (!n) {
				ret = -ENOMEM;
				break;
			}
			buf = n;
			cap = ncap < len ? ncap : len;
		}
		ret = read_all(fd, buf + have, chunk, st);
		have += chunk;
	}
	if (!ret)
		ret = read_hash(fd, &hash, st);
	if (!ret && hash != XXH3_64bits(buf, len)) {
		pr_err("state stream: section checksum mismatch");
		ret = -EINVAL;
	}
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	return 0;
}

/*
 * One run header of a MEMORY payload with *len bytes left: read, hash,
 * check against the RAM and what is left (which then holds the run's data).
 */
static int read_run(int fd, uint64_t *len, uint64_t ram_pages, XXH3_state_t *xs, uint64_t *first,
		    uint64_t *count, struct stream_stats *st)
{
	struct wire_run r;
	int ret;

	if (*len < sizeof(r)) {
		pr_err("state stream: memory section ends inside a run header");
		return -EINVAL;
	}
	ret = read_all(fd, &r, sizeof(r), st);
	if (ret)
		return ret;
	XXH3_64bits_update(xs, &r, sizeof(r));
	*len -= sizeof(r);
	*first = le64toh(r.first_page);
	*count = le32toh(r.count);
	if (*count == 0 || *count > STREAM_RUN_MAX_PAGES || *first >= ram_pages ||
	    *count > ram_pages - *first || *count * PAGE > *len || r.reserved) {
		pr_err("state stream: bad page run (%llu pages at page %llu of %llu)",
		       (unsigned long long)*count, (unsigned long long)*first,
		       (unsigned long long)ram_pages);
		return -EINVAL;
	}
	return 0;
}

int stream_read_memory(int fd, uint64_t len, struct guest_mem *mem, struct stream_stats *st)
{
	uint64_t npages = mem->ram_size / PAGE, hash;
	XXH3_state_t *xs = XXH3_createState();
	int ret = 0;

	if (!xs)
		return -ENOMEM;
	XXH3_64bits_reset(xs);
	while (!ret && len) {
		uint64_t first, count;
		uint8_t *dst;

		ret = read_run(fd, &len, npages, xs, &first, &count, st);
		if (ret)
			break;
		dst = mem->host_base + first * PAGE;
		ret = read_all(fd, dst, count * PAGE, st);
		if (ret)
			break;
		XXH3_64bits_update(xs, dst, count * PAGE);
		/* The memfd offset of page `first` is its RAM index: mark by region. */
		for (uint64_t p = first; p < first + count; p++)
			__atomic_fetch_or(&mem->dirty[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
		len -= count * PAGE;
		if (st)
			st->pages += count;
	}
	if (!ret)
		ret = read_hash(fd, &hash, st);
	if (!ret && hash != XXH3_64bits_digest(xs)) {
		pr_err("state stream: memory section checksum mismatch");
		ret = -EINVAL;
	}
	XXH3_freeState(xs);
	return ret;
}

const char *stream_section_name(uint32_t type)
{
	switch (type) {
	case STREAM_SEC_CONFIG:
		return "CONFIG";
	case STREAM_SEC_MEMORY:
		return "MEMORY";
	case STREAM_SEC_STATE:
		return "STATE";
	case STREAM_SEC_END:
		return "END";
	case STREAM_SEC_EPOCH:
		return "EPOCH";
	case STREAM_SEC_DISK:
		return "DISK";
	case STREAM_SEC_EPOCH_END:
		return "EPOCH_END";
	case STREAM_SEC_HEARTBEAT:
		return "HEARTBEAT";
	case STREAM_SEC_SHUTDOWN:
		return "SHUTDOWN";
	case STREAM_SEC_RELEASE:
		return "RELEASE";
	case STREAM_SEC_SESSION:
		return "SESSION";
	case STREAM_SEC_DROPPED:
		return "DROPPED";
	case STREAM_SEC_EMITTED:
		return "EMITTED";
	default:
		return "unknown";
	}
}

/* ---- page lists: an epoch's pages, copied while the guest is paused ---- */

int page_list_resize(struct page_list *list, size_t n)
{
	if (list->max && n > list->max)
		return -ENOSPC;
	if (n > list->cap) {
		size_t ncap = list->cap ? list->cap : 1024;
		uint64_t *ni;
		uint8_t *nd;

		while (ncap < n)
			ncap *= 2;
		if (list->max && ncap > list->max)
			ncap = list->max;
		ni = realloc(list->index, ncap * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		list->index = ni;
		nd = realloc(list->data, ncap * PAGE);
		if (!nd)
			return -ENOMEM;
		list->data = nd;
		list->cap = ncap;
	}
	list->n = n;
	return 0;
}

int page_list_add(struct page_list *list, uint64_t index, const void *src)
{
	size_t i = list->n;
	int ret = page_list_resize(list, i + 1);

	if (ret)
		return ret;
	list->index[i] = index;
	memcpy(list->data + i * PAGE, src, PAGE);
	return 0;
}

void page_list_apply(const struct page_list *list, struct guest_mem *mem)
{
	for (size_t i = 0; i < list->n; i++) {
		uint64_t p = list->index[i];

		memcpy(mem->host_base + p * PAGE, list->data + i * PAGE, PAGE);
		__atomic_fetch_or(&mem->dirty[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
	}
}

void page_list_clear(struct page_list *list)
{
	list->n = 0;
}

void page_list_free(struct page_list *list)
{
	free(list->index);
	free(list->data);
	*list = (struct page_list){0};
}

int stream_write_page_list(int fd, const struct page_list *list, struct stream_stats *st)
{
	uint64_t len = 0, hash;
	size_t i, start;
	XXH3_state_t *xs;
	int ret;

	/* Runs: consecutive indices, at most STREAM_RUN_MAX_PAGES each. */
	for (i = 0; i < list->n; i = start) {
		start = i + 1;
		while (start < list->n && list->index[start] == list->index[start - 1] + 1 &&
		       start - i < STREAM_RUN_MAX_PAGES)
			start++;
		len += sizeof(struct wire_run) + (start - i) * PAGE;
	}
	xs = XXH3_createState();
	if (!xs)
		return -ENOMEM;
	XXH3_64bits_reset(xs);
	struct wire_section s = {.type = htole32(STREAM_SEC_MEMORY), .length = htole64(len)};
	ret = write_all(fd, &s, sizeof(s), st);
	for (i = 0; !ret && i < list->n; i = start) {
		start = i + 1;
		while (start < list->n && list->index[start] == list->index[start - 1] + 1 &&
		       start - i < STREAM_RUN_MAX_PAGES)
			start++;
		struct wire_run r = {.first_page = htole64(list->index[i]),
				     .count = htole32((uint32_t)(start - i))};
		struct iovec iov[2] = {{&r, sizeof(r)},
				       {list->data + i * PAGE, (start - i) * PAGE}};

		XXH3_64bits_update(xs, &r, sizeof(r));
		XXH3_64bits_update(xs, iov[1].iov_base, iov[1].iov_len);
		ret = write_iov(fd, iov, 2, st);
		if (st)
			st->pages += start - i;
	}
	hash = htole64(XXH3_64bits_digest(xs));
	if (!ret)
		ret = write_all(fd, &hash, sizeof(hash), st);
	XXH3_freeState(xs);
	return ret;
}

int stream_read_memory_list(int fd, uint64_t len, uint64_t ram_pages, struct page_list *list,
			    struct stream_stats *st)
{
	uint8_t *buf = malloc(STREAM_RUN_MAX_PAGES * PAGE);
	XXH3_state_t *xs = XXH3_createState();
	uint64_t hash;
	int ret = 0;

	if (!buf || !xs) {
		free(buf);
		XXH3_freeState(xs);
		return -ENOMEM;
	}
	XXH3_64bits_reset(xs);
	while (!ret && len) {
		uint64_t first, count;

		ret = read_run(fd, &len, ram_pages, xs, &first, &count, st);
		if (ret)
			break;
		ret = read_all(fd, buf, count * PAGE, st);
		if (ret)
			break;
		XXH3_64bits_update(xs, buf, count * PAGE);
		for (uint64_t i = 0; !ret && i < count; i++)
			ret = page_list_add(list, first + i, buf + i * PAGE);
		len -= count * PAGE;
		if (st)
			st->pages += count;
	}
	if (!ret)
		ret = read_hash(fd, &hash, st);
	if (!ret && hash != XXH3_64bits_digest(xs)) {
		pr_err("state stream: memory section checksum mismatch");
		ret = -EINVAL;
	}
	XXH3_freeState(xs);
	free(buf);
	return ret;
}
