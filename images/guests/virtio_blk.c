// SPDX-License-Identifier: MIT
/*
 * virtio_blk: drives a virtio-blk disk from ring 3 with the kit's polling
 * driver.  Keys:
 *   disk=N      which virtio-blk device (default 0: the first --disk)
 *   mode=rw     write `sectors` sectors from sector 0 with a pattern, flush,
 *               read them back and compare (default)
 *   mode=verify only read and compare (the pattern a previous rw run wrote)
 *   mode=ro     the disk must be read-only: writes fail with IOERR, reads work
 *   mode=log    a write log for replication tests: write `sectors` sectors 8
 *               at a time (4 KiB blocks) in order, one every interval_ms,
 *               flush every 8 blocks, print `virtio_blk: acked block=<k>`
 *               as each completes, then read everything back and compare
 *   sectors=N   how many 512-byte sectors (default 2048 = 1 MiB)
 *   seed=N      pattern seed (default 1)
 * First line: `virtio_blk: disk=<n> capacity=<sectors> ro=<0|1> serial=<id>`.
 * Then `virtio_blk: ok mode=<mode> bytes=<n> fnv=0x<16 hex>` (FNV-1a 64 of
 * the bytes written or verified, so the host can check its image file) and
 * status 0, or `virtio_blk: FAIL <reason>` and status 1.  A request past the
 * end of the disk must fail with IOERR in every mode.
 */
#include "kit.h"

#define SECTOR	      512
#define BLK_T_IN      0
#define BLK_T_OUT     1
#define BLK_T_FLUSH   4
#define BLK_T_GET_ID  8
#define BLK_S_OK      0
#define BLK_S_IOERR   1
#define BLK_F_SEG_MAX 2
#define BLK_F_RO      5
#define BLK_F_BLKSIZE 6
#define BLK_F_FLUSH   9
#define REQ_SECTORS   64 /* 32 KiB per request */
#define INFLIGHT      4
#define ID_LEN	      20

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct req {
	struct blk_hdr hdr;
	uint8_t status;
};

static struct virtio_device dev;
static struct req *reqs; /* INFLIGHT of them, in RAM the device can reach */
static uint8_t *data;	 /* INFLIGHT * REQ_SECTORS sectors */

/* The pattern: every 8-byte word of the disk from (seed, its index), splitmix64. */
static uint64_t pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed * 0x9e3779b97f4a7c15ULL + index;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill_pattern(uint8_t *p, uint64_t seed, uint64_t sector, uint32_t n)
{
	uint64_t *w = (uint64_t *)p;

	for (uint64_t i = 0; i < (uint64_t)n * SECTOR / 8; i++)
		w[i] = pattern_word(seed, sector * (SECTOR / 8) + i);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * Publish one request in slot s: header, up to two data buffers (split in
 * the middle when `split`), status.  Returns the head or -1.
 */
static int publish(unsigned s, uint32_t type, uint64_t sector, uint8_t *buf, uint32_t len,
		   bool split)
{
	struct virtio_buf b[4];
	unsigned n = 0, n_out;
	bool dev_writes = type == BLK_T_IN || type == BLK_T_GET_ID;

	reqs[s].hdr = (struct blk_hdr){type, 0, sector};
	reqs[s].status = 0xff;
	b[n++] = (struct virtio_buf){&reqs[s].hdr, sizeof(reqs[s].hdr)};
	n_out = 1;
	if (len && split && len >= 2 * SECTOR) {
		uint32_t half = len / 2 / SECTOR * SECTOR;

		b[n++] = (struct virtio_buf){buf, half};
		b[n++] = (struct virtio_buf){buf + half, len - half};
	} else if (len) {
		b[n++] = (struct virtio_buf){buf, len};
	}
	if (!dev_writes)
		n_out = n;
	b[n++] = (struct virtio_buf){&reqs[s].status, 1};
	return virtio_publish(&dev, 0, b, n_out, n - n_out);
}

/* One request, waited for; returns its status byte (0xff if it never completed). */
static int one(uint32_t type, uint64_t sector, uint8_t *buf, uint32_t len, uint32_t *used)
{
	int head = publish(0, type, sector, buf, len, false);

	if (head < 0)
		return 0xff;
	virtio_notify(&dev, 0);
	if (virtio_wait_used(&dev, 0, used) != head)
		return 0xff;
	return reqs[0].status;
}

/*
 * Stream `sectors` sectors through the disk in batches of INFLIGHT
 * requests: write the pattern (write=true) or read and compare.  Returns 0
 * or -1 after printing why; *h accumulates FNV over the bytes.
 */
static int stream(bool write, uint64_t seed, uint64_t sectors, uint64_t *h)
{
	uint64_t next = 0;
	int slot_of[VIRTIO_KIT_QUEUE_MAX];

	while (next < sectors) {
		uint64_t start[INFLIGHT];
		uint32_t cnt[INFLIGHT];
		unsigned nr = 0;

		for (; nr < INFLIGHT && next < sectors; nr++) {
			uint32_t c =
			    sectors - next < REQ_SECTORS ? (uint32_t)(sectors - next) : REQ_SECTORS;
			uint8_t *buf = data + (uint64_t)nr * REQ_SECTORS * SECTOR;
			int head;

			if (write)
				fill_pattern(buf, seed, next, c);
			else
				memset(buf, 0, (size_t)c * SECTOR);
			head = publish(nr, write ? BLK_T_OUT : BLK_T_IN, next, buf, c * SECTOR,
				       nr & 1);
			if (head < 0) {
				printf("virtio_blk: FAIL publish: %s\n", virtio_error());
				return -1;
			}
			slot_of[head] = (int)nr;
			start[nr] = next;
			cnt[nr] = c;
			next += c;
		}
		virtio_notify(&dev, 0);
		for (unsigned i = 0; i < nr; i++) {
			uint32_t used;
			int head = virtio_wait_used(&dev, 0, &used);

			if (head < 0) {
				printf("virtio_blk: FAIL %s (status 0x%x)\n", virtio_error(),
				       virtio_status(&dev));
				return -1;
			}
			if (reqs[slot_of[head]].status != BLK_S_OK) {
				printf("virtio_blk: FAIL %s of sector %lu: status %u\n",
				       write ? "write" : "read", start[slot_of[head]],
				       reqs[slot_of[head]].status);
				return -1;
			}
			if (!write && used != cnt[slot_of[head]] * SECTOR + 1) {
				printf("virtio_blk: FAIL read of sector %lu: used length %u\n",
				       start[slot_of[head]], used);
				return -1;
			}
		}
		/* Completions may come in any order; check and hash in disk order. */
		for (unsigned i = 0; i < nr; i++) {
			uint8_t *buf = data + (uint64_t)i * REQ_SECTORS * SECTOR;
			uint64_t *w = (uint64_t *)buf;

			for (uint64_t k = 0; !write && k < (uint64_t)cnt[i] * SECTOR / 8; k++) {
				uint64_t want = pattern_word(seed, start[i] * (SECTOR / 8) + k);

				if (w[k] != want) {
					printf("virtio_blk: FAIL sector %lu word %lu: 0x%lx, "
					       "want 0x%lx\n",
					       start[i] + k * 8 / SECTOR, k % (SECTOR / 8), w[k],
					       want);
					return -1;
				}
			}
			*h = fnv(*h, buf, (uint64_t)cnt[i] * SECTOR);
		}
	}
	return 0;
}

/*
 * mode=log: one 4 KiB write at a time, each acknowledged on the console
 * only once the device completed it, so a test can check that every block
 * the outside world saw acknowledged is on the disk, whatever happened to
 * the host in between.
 */
static int write_log(uint64_t seed, uint64_t sectors, uint64_t interval_ms)
{
	uint64_t next = rdtsc();
	uint32_t used;
	int st;

	for (uint64_t s = 0, k = 0; s < sectors; s += 8, k++) {
		uint32_t n = sectors - s < 8 ? (uint32_t)(sectors - s) : 8;

		while (rdtsc() < next)
			cpu_relax();
		next += interval_ms * tsc_khz();
		fill_pattern(data, seed, s, n);
		st = one(BLK_T_OUT, s, data, n * SECTOR, &used);
		if (st == BLK_S_OK && k % 8 == 7)
			st = one(BLK_T_FLUSH, 0, NULL, 0, &used);
		if (st != BLK_S_OK) {
			printf("virtio_blk: FAIL log write of block %lu: status %d\n", k, st);
			return -1;
		}
		printf("virtio_blk: acked block=%lu\n", k);
	}
	return 0;
}

int main(const char *cmdline)
{
	uint64_t want = (1ULL << BLK_F_SEG_MAX) | (1ULL << BLK_F_RO) | (1ULL << BLK_F_BLKSIZE) |
			(1ULL << BLK_F_FLUSH);
	uint64_t sectors = cmdline_get_u64("sectors", 2048), seed = cmdline_get_u64("seed", 1);
	uint64_t capacity, h = 0xcbf29ce484222325ULL;
	unsigned disk = (unsigned)cmdline_get_u64("disk", 0);
	char mode[16] = "rw", id[ID_LEN + 1];
	uint8_t *idbuf;
	uint32_t used;
	bool ro;
	int st;

	(void)cmdline;
	cmdline_get_str("mode", mode, sizeof(mode));
	if (strcmp(mode, "rw") && strcmp(mode, "verify") && strcmp(mode, "ro") &&
	    strcmp(mode, "log")) {
		printf("virtio_blk: FAIL mode= must be rw, verify, ro or log\n");
		return KIT_EXIT_USAGE;
	}
	if (virtio_find_nth(VIRTIO_ID_BLOCK, disk, &dev)) {
		printf("virtio_blk: FAIL no virtio-blk device %u (%s)\n", disk, virtio_error());
		return KIT_EXIT_FAIL;
	}
	if (virtio_init(&dev, want) || virtio_queue_setup(&dev, 0, 0) || virtio_driver_ok(&dev)) {
		printf("virtio_blk: FAIL set-up: %s (status 0x%x)\n", virtio_error(),
		       virtio_status(&dev));
		return KIT_EXIT_FAIL;
	}
	reqs = virtio_alloc(INFLIGHT * sizeof(*reqs), 64);
	data = virtio_alloc(INFLIGHT * REQ_SECTORS * SECTOR, PAGE_SIZE);
	idbuf = virtio_alloc(ID_LEN, 64);
	if (!reqs || !data || !idbuf || !virtio_device_cfg(&dev)) {
		printf("virtio_blk: FAIL no RAM for buffers or no device config\n");
		return KIT_EXIT_USAGE;
	}
	/* capacity is a le64 at offset 0; read it as two dwords, as drivers must. */
	capacity = *(volatile uint32_t *)virtio_device_cfg(&dev) |
		   (uint64_t)((volatile uint32_t *)virtio_device_cfg(&dev))[1] << 32;
	ro = dev.features & (1ULL << BLK_F_RO);
	memset(id, 0, sizeof(id));
	st = one(BLK_T_GET_ID, 0, idbuf, ID_LEN, &used);
	if (st == BLK_S_OK)
		memcpy(id, idbuf, ID_LEN);
	printf("virtio_blk: disk=%u capacity=%lu ro=%d serial=%s\n", disk, capacity, ro, id);
	if (st != BLK_S_OK) {
		printf("virtio_blk: FAIL GET_ID status %d\n", st);
		return KIT_EXIT_FAIL;
	}
	if (sectors == 0 || sectors > capacity) {
		printf("virtio_blk: FAIL sectors=%lu does not fit the disk (%lu)\n", sectors,
		       capacity);
		return KIT_EXIT_USAGE;
	}
	/* Past the end: an error, never data. */
	st = one(BLK_T_IN, capacity, data, SECTOR, &used);
	if (st != BLK_S_IOERR) {
		printf("virtio_blk: FAIL read past the end: status %d, want IOERR\n", st);
		return KIT_EXIT_FAIL;
	}
	if (!strcmp(mode, "ro")) {
		if (!ro) {
			printf("virtio_blk: FAIL the disk is not read-only\n");
			return KIT_EXIT_FAIL;
		}
		fill_pattern(data, seed, 0, 1);
		st = one(BLK_T_OUT, 0, data, SECTOR, &used);
		if (st != BLK_S_IOERR) {
			printf("virtio_blk: FAIL write to a read-only disk: status %d\n", st);
			return KIT_EXIT_FAIL;
		}
		if (one(BLK_T_IN, 0, data, SECTOR, &used) != BLK_S_OK) {
			printf("virtio_blk: FAIL read from a read-only disk\n");
			return KIT_EXIT_FAIL;
		}
		h = fnv(h, data, SECTOR);
		printf("virtio_blk: ok mode=ro bytes=%u fnv=0x%016lx write refused\n", SECTOR, h);
		return KIT_EXIT_OK;
	}
	if (!strcmp(mode, "log") && ro) {
		printf("virtio_blk: FAIL the disk is read-only\n");
		return KIT_EXIT_FAIL;
	}
	if (!strcmp(mode, "log") && write_log(seed, sectors, cmdline_get_u64("interval_ms", 10)))
		return KIT_EXIT_FAIL;
	if (!strcmp(mode, "rw")) {
		if (ro) {
			printf("virtio_blk: FAIL the disk is read-only\n");
			return KIT_EXIT_FAIL;
		}
		if (stream(true, seed, sectors, &h))
			return KIT_EXIT_FAIL;
		if ((dev.features & (1ULL << BLK_F_FLUSH)) &&
		    (st = one(BLK_T_FLUSH, 0, NULL, 0, &used)) != BLK_S_OK) {
			printf("virtio_blk: FAIL flush: status %d\n", st);
			return KIT_EXIT_FAIL;
		}
		h = 0xcbf29ce484222325ULL; /* the hash printed is of what is read back */
	}
	if (stream(false, seed, sectors, &h))
		return KIT_EXIT_FAIL;
	printf("virtio_blk: ok mode=%s bytes=%lu fnv=0x%016lx\n", mode, sectors * SECTOR, h);
	return KIT_EXIT_OK;
}
