// SPDX-License-Identifier: MIT
/* The primary's disks under replication: the write journal and held completions. */
#include "repl_disk.h"

#include <errno.h>
#include <string.h>

#include "log.h"
#include "virtio_blk.h"
#include "vm.h"

static void journal(void *opaque, unsigned disk, uint32_t type, uint64_t offset, uint64_t len,
		    const struct iovec *iov, int iovcnt)
{
	struct repl_disk *d = opaque;

	pthread_mutex_lock(&d->lock);
	if (!d->error && epoch_disk_add(&d->journal, disk, type, offset, len, iov, iovcnt))
		d->error = -ENOMEM;
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_blk_journal_ops journal_ops = {.journal = journal};

int repl_disk_init(struct repl_disk *d, struct vm *vm)
{
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->release_lock, NULL);
	return 0;
}

void repl_disk_start(struct repl_disk *d)
{
	for (unsigned i = 0; i < d->vm->nr_blks; i++)
		virtio_blk_set_journal(d->vm->blks[i], &journal_ops, d);
	d->journaling = true;
}

int repl_disk_take(struct repl_disk *d, struct epoch *e, uint64_t next_epoch)
{
	uint8_t *buf;
	size_t cap;
	int ret;

	pthread_mutex_lock(&d->lock);
	/* Swap buffers: the epoch gets the journal, the journal gets the old buffer back. */
	buf = e->disk;
	cap = e->disk_cap;
	e->disk = d->journal.disk;
	e->disk_cap = d->journal.disk_cap;
	e->disk_len = d->journal.disk_len;
	e->disk_entries = d->journal.disk_entries;
	d->journal.disk = buf;
	d->journal.disk_cap = cap;
	d->journal.disk_len = 0;
	d->journal.disk_entries = 0;
	ret = d->error;
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < d->vm->nr_blks; i++) {
		virtio_blk_set_epoch(d->vm->blks[i], next_epoch);
		if (!d->holding)
			virtio_blk_hold_completions(d->vm->blks[i], true);
	}
	d->holding = true;
	return ret;
}

void repl_disk_release(struct repl_disk *d, uint64_t upto)
{
	pthread_mutex_lock(&d->release_lock);
	for (unsigned i = 0; i < d->vm->nr_blks; i++)
		virtio_blk_release_completions(d->vm->blks[i], upto);
	pthread_mutex_unlock(&d->release_lock);
}

void repl_disk_unhold(struct repl_disk *d)
{
	pthread_mutex_lock(&d->release_lock);
	for (unsigned i = 0; i < d->vm->nr_blks; i++) {
		virtio_blk_hold_completions(d->vm->blks[i], false);
		virtio_blk_release_completions(d->vm->blks[i], UINT64_MAX);
	}
	d->holding = false;
	pthread_mutex_unlock(&d->release_lock);
}

void repl_disk_destroy(struct repl_disk *d)
{
	if (d->journaling)
		for (unsigned i = 0; i < d->vm->nr_blks; i++)
			virtio_blk_set_journal(d->vm->blks[i], NULL, NULL);
	d->journaling = false;
	epoch_free(&d->journal);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->release_lock);
}
