// SPDX-License-Identifier: MIT
/*
 * The primary: sync the standby, then checkpoint the running guest every
 * epoch and release each epoch's output when the standby acknowledges it.
 */
#include "replicate.h"

#include <endian.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dirty_log.h"
#include "epoch.h"
#include "heartbeat.h"
#include "log.h"
#include "mono_time.h"
#include "repl_disk.h"
#include "tcp_socket.h"
#include "vm.h"
#include "vm_state.h"
#include "vm_stream.h"

#define CONNECT_TRIES	  150 /* x 200 ms: a standby started a little after us still joins */
#define SYNC_MAX_PASSES	  8
#define SYNC_DONE_PAGES	  2048 /* few enough dirty pages to take the first checkpoint */
#define STAGING_MAX_PAGES (256u << 20) / 4096 /* beyond this an epoch is sent while paused */
#define PAUSE_HISTORY	  512
/* Copy the guest's dirty pages this long before each pause (at most a quarter epoch). */
#define COPY_AHEAD_NS 2000000ULL

struct replication {
	struct vm *vm;
	struct repl_params p;
	int sock;
	pthread_t thread, ack_thread;
	bool thread_started, ack_started;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	bool stopping;	   /* the VM is ending */
	bool standby_lost; /* the link or the standby failed */
	bool protected_;   /* the standby has acknowledged a checkpoint */
	bool syncing;
	bool standby_ended; /* it read our SHUTDOWN (ENDED): it will not take over */
	bool standby_gone;  /* the connection ended while stopping: no answer will come */
	uint64_t epoch, acked, epochs;
	uint32_t pause_us[PAUSE_HISTORY]; /* as the guest saw them (vm_last_pause_ns) */
	unsigned nr_pause;
	uint64_t pauses_seen;
	uint64_t last_pages, last_ahead;
	/* Where the pauses went: sums of each part over nr_parts pauses (ns). */
	uint64_t part_ns[REPL_PAUSE_PARTS], nr_parts;
	char note[128];
	uint64_t session;   /* names this pairing in the witness */
	bool session_named; /* the witness says this session's standby may take over */

	pthread_mutex_t send_lock; /* the socket's write side */
	uint64_t last_send_ns;	   /* under send_lock: when the standby last got anything */
	bool shutdown_sent;	   /* under send_lock: SHUTDOWN written, the stream is over */
	struct heartbeat_timing hb;
	pthread_t hb_thread;
	bool hb_started;
	struct stream_stats st;
	struct dirty_log dl;
	uint64_t *dirty;  /* the epoch's pages (bitmap) */
	uint64_t *late;	  /* at the pause: pages written since the copy ahead */
	size_t ahead;	  /* e.pages[0, ahead) were copied ahead of the pause */
	size_t *copy_pos; /* the pause's copy: positions in e.pages to fill */
	size_t copy_pos_room;
	struct epoch e;
	struct repl_disk disk; /* the disk writes of the epoch in progress */
};

void replicate_params_from_options(const struct vm_options *o, struct repl_params *p)
{
	*p = (struct repl_params){
	    .epoch_ms = o->epoch_ms ? o->epoch_ms : REPL_DEFAULT_EPOCH_MS,
	    .failover_timeout_ms =
		o->failover_timeout_ms ? o->failover_timeout_ms : REPL_DEFAULT_FAILOVER_TIMEOUT_MS,
	};
	if (o->replicate_to)
		snprintf(p->peer, sizeof(p->peer), "%s", o->replicate_to);
}

/* Lock held. */
static void set_note(struct replication *r, const char *note)
{
	snprintf(r->note, sizeof(r->note), "%s", note);
}

/* The link is gone: everything held may leave, the guest runs on unprotected. */
static void lose_standby(struct replication *r, const char *why)
{
	bool first;

	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		/* Our own hang-up at the end: replicate_stop decides about held output. */
		r->standby_gone = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		pr_debug("replication to %s: at the end: %s", r->p.peer, why);
		return;
	}
	first = !r->standby_lost;
	r->standby_lost = true;
	r->protected_ = false;
	if (first)
		set_note(r, why);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (!first)
		return;
	pr_warn("replication to %s: %s; the guest runs on UNPROTECTED", r->p.peer, why);
	/*
	 * A standby that is merely slow must not take our hang-up for our death:
	 * tell it first (if the link still carries anything), then hang up.
	 */
	pthread_mutex_lock(&r->send_lock);
	stream_write_section(r->sock, STREAM_SEC_DROPPED, NULL, 0, NULL);
	pthread_mutex_unlock(&r->send_lock);
	shutdown(r->sock, SHUT_RDWR);
	/*
	 * With a witness, the lost standby may merely be cut off: it must never
	 * resume its (now stale) copy once this side lets output out.
	 */
	if (fence_clear_session(&r->vm->fence)) {
		pr_err("replication: cannot tell the witness the standby is stale; holding output");
		return;
	}
	output_buffer_unhold(&r->vm->out);
	repl_disk_unhold(&r->disk);
}

static bool should_stop(struct replication *r)
{
	bool stop;

	pthread_mutex_lock(&r->lock);
	stop = r->stopping || r->standby_lost;
	pthread_mutex_unlock(&r->lock);
	return stop;
}

/* ---- messages to the standby besides epochs ---- */

/* One u64 section; *mark (if not NULL): the stream's length up to its end. */
static int send_u64_section(struct replication *r, enum stream_section type, uint64_t v,
			    uint64_t *mark)
{
	uint64_t le = htole64(v);
	int ret;

	pthread_mutex_lock(&r->send_lock);
	/* Nothing follows a SHUTDOWN: the standby stops reading and hangs up on it. */
	ret = r->shutdown_sent ? -ESHUTDOWN
			       : stream_write_section(r->sock, type, &le, sizeof(le), &r->st);
	if (mark)
		*mark = r->st.bytes;
	r->last_send_ns = mono_ns();
	pthread_mutex_unlock(&r->send_lock);
	return ret;
}

/*
 * Wait until this host's socket has put on the wire the stream up to mark
 * (the end of a RELEASE).  Written is not sent: behind a backlog of epoch
 * data (a standby slow to read) a RELEASE can sit in the socket for many
 * milliseconds, and if this process dies then, the standby's next message
 * draws a reset that drops it: the standby would resume from before the
 * output the world has seen.  Usually nothing is queued and this is one
 * ioctl.  A slow link is not a dead one: the timeout runs from the last
 * byte seen leaving.  0, -ETIMEDOUT (nothing left for the timeout),
 * -ECANCELED, -errno.
 */
static int wait_transmitted(struct replication *r, uint64_t mark)
{
	uint64_t deadline = mono_ns() + r->hb.timeout_ns, sent = 0;

	for (;;) {
		/* Read first: written only lags what the kernel has, so this errs on waiting. */
		uint64_t written = __atomic_load_n(&r->st.bytes, __ATOMIC_RELAXED);
		int unsent;
		bool lost;

		if (ioctl(r->sock, SIOCOUTQNSD, &unsent) < 0)
			return -errno;
		if (unsent >= 0 && (uint64_t)unsent <= written - mark)
			return 0;
		if (unsent >= 0 && written - (uint64_t)unsent > sent) {
			sent = written - (uint64_t)unsent;
			deadline = mono_ns() + r->hb.timeout_ns;
		}
		pthread_mutex_lock(&r->lock);
		lost = r->standby_lost;
		pthread_mutex_unlock(&r->lock);
		if (lost)
			return -ECANCELED;
		if (mono_ns() >= deadline)
			return -ETIMEDOUT;
		mono_sleep_ns(50000);
	}
}

/* ---- acknowledgements ---- */

static void *ack_thread(void *arg)
{
	struct replication *r = arg;
	struct repl_msg m;

	pthread_setname_np(pthread_self(), "repl-ack");
	/*
	 * Between telling the standby an epoch is released and writing its
	 * output lies the one window where a crash loses output: keep this
	 * thread from being preempted there, where allowed (else as is).
	 */
	struct sched_param sp = {.sched_priority = 1};
	pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	for (;;) {
		size_t got = 0;
		ssize_t n = 0;

		while (got < sizeof(m)) {
			n = recv(r->sock, (uint8_t *)&m + got, sizeof(m) - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		if (got < sizeof(m)) {
			lose_standby(r, n == 0		  ? "the standby closed the connection"
					: errno == EAGAIN ? "the standby stopped answering"
							  : strerror(errno));
			return NULL;
		}
		if (le32toh(m.magic) != REPL_MSG_MAGIC) {
			lose_standby(r, "garbage from the standby");
			return NULL;
		}
		if (le32toh(m.type) == REPL_MSG_ENDED) {
			/*
			 * Only this answer says so: a hang-up alone might be a standby
			 * that crashed or took over, and a reset may come either way.
			 */
			pthread_mutex_lock(&r->lock);
			r->standby_ended = r->stopping;
			pthread_cond_broadcast(&r->cond);
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		if (le32toh(m.type) != REPL_MSG_ACK)
			continue; /* a heartbeat: the receive timeout starts over */
		uint64_t epoch = le64toh(m.epoch);

		pthread_mutex_lock(&r->lock);
		if (epoch <= r->acked || epoch > r->epoch) {
			pthread_mutex_unlock(&r->lock);
			lose_standby(r, "the standby acknowledged an epoch never sent");
			return NULL;
		}
		r->acked = epoch;
		if (!r->protected_)
			pr_info("replication to %s: protected (checkpoint %llu committed)",
				r->p.peer, (unsigned long long)epoch);
		r->protected_ = true;
		set_note(r, "");
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		/*
		 * The standby has everything up to epoch.  Tell it first that this
		 * epoch's output goes out now (it will resume from here), and once
		 * that has left this host, let it go: the only moment both could
		 * disagree is between the last check and the release.
		 */
		if (!fence_allowed(&r->vm->fence))
			continue; /* fenced: this side lets nothing out any more */
		if (!r->session_named) {
			int fr = fence_set_session(&r->vm->fence, r->session);

			r->session_named = fr == 0;
			if (fr)
				pr_warn(
				    "replication: the witness does not name this standby yet (%s); "
				    "it cannot take over until it does",
				    strerror(-fr));
		}
		struct output_batch batch;
		uint64_t mark;
		int ret;

		/* Taken first: no lock a preempted vCPU thread holds can widen the window. */
		output_buffer_take(&r->vm->out, epoch, &batch);
		ret = send_u64_section(r, STREAM_SEC_RELEASE, epoch, &mark);
		if (!ret)
			ret = wait_transmitted(r, mark);
		output_buffer_emit(&r->vm->out, &batch); /* lost or not, it goes out now */
		if (ret == -ESHUTDOWN)
			continue; /* the guest ended: wait for ENDED; the rest goes out with it */
		if (ret) {
			lose_standby(r, ret == -ETIMEDOUT ? "the standby stopped reading"
							  : "sending failed");
			return NULL;
		}
		/* Its output is out: without this word the standby cannot tell (and says so)
		 * whether a primary that died just after the RELEASE had let it go. */
		send_u64_section(r, STREAM_SEC_EMITTED, epoch, NULL);
		repl_disk_release(&r->disk, epoch);
		pr_debug("replication: epoch %llu released", (unsigned long long)epoch);
	}
}

/* ---- sending ---- */

static int send_heartbeat(struct replication *r)
{
	return send_u64_section(r, STREAM_SEC_HEARTBEAT, r->epoch, NULL);
}

/*
 * Heartbeats on their own thread: a checkpoint pause or a slow epoch must
 * not look like death to the standby.  Sends only when the link has been
 * idle for the heartbeat interval (an epoch in flight is proof of life);
 * include/heartbeat.h has the timing and the silence it bounds.
 */
static void *heartbeat_thread(void *arg)
{
	struct replication *r = arg;
	uint64_t wait = r->hb.check_ns;

	pthread_setname_np(pthread_self(), "repl-hb");
	for (;;) {
		uint64_t now;
		bool due;

		mono_sleep_ns(wait);
		if (should_stop(r))
			break;
		/* trylock: if an epoch is being written, the standby is hearing from us. */
		if (pthread_mutex_trylock(&r->send_lock)) {
			wait = r->hb.check_ns;
			continue;
		}
		now = mono_ns();
		due = heartbeat_due(&r->hb, r->last_send_ns, now);
		wait = heartbeat_nap_ns(&r->hb, r->last_send_ns, now);
		pthread_mutex_unlock(&r->send_lock);
		if (!due)
			continue;
		if (send_heartbeat(r))
			break;
		wait = r->hb.check_ns;
	}
	return NULL;
}

/* Initial sync while the guest runs: CONFIG, all RAM, then dirty passes until few remain. */
static int sync_standby(struct replication *r)
{
	struct vm *vm = r->vm;
	uint64_t words = dirty_log_words(&vm->mem);
	int ret;

	/* Exact boundaries: writes from here on are journaled, pages from here on logged. */
	if (vm_pause_with_loop(vm))
		return -ECANCELED;
	vm_state_quiesce(vm);
	repl_disk_start(&r->disk);
	ret = dirty_log_start(&r->dl, vm->vm_fd, &vm->mem);
	vm_state_unquiesce(vm);
	event_loop_unpark(&vm->loop);
	vm_resume(vm);
	if (!ret)
		ret = vm_stream_send_begin(vm, r->sock, &r->st);
	if (!ret)
		ret = send_u64_section(r, STREAM_SEC_SESSION, r->session, NULL);
	if (!ret)
		ret = stream_write_memory(r->sock, &vm->mem, NULL, STREAM_MEM_LIVE, &r->st);
	for (int pass = 0; !ret && pass < SYNC_MAX_PASSES && !should_stop(r); pass++) {
		int64_t n = dirty_log_collect(&r->dl, r->dirty);

		if (n < 0)
			return (int)n;
		if (n <= SYNC_DONE_PAGES)
			break; /* the first checkpoint takes these */
		ret = stream_write_memory(r->sock, &vm->mem, r->dirty,
					  STREAM_MEM_LIVE | STREAM_MEM_SEND_ZERO, &r->st);
		memset(r->dirty, 0, words * sizeof(uint64_t));
	}
	return ret;
}

/* With r->lock: file the VM's last pause if it is new (its vCPUs are all running again). */
static void take_pause(struct replication *r)
{
	uint64_t count, ns = vm_last_pause_ns(r->vm, &count);

	if (count == r->pauses_seen)
		return;
	r->pauses_seen = count;
	r->pause_us[r->nr_pause++ % PAUSE_HISTORY] = (uint32_t)(ns / 1000);
}

/* Copying an epoch's pages, shared with the parked vCPU threads: CHUNK pages at a time. */
struct page_copy {
	struct page_list *list;
	const uint8_t *ram;
	const size_t *pos; /* the list positions to fill */
	size_t n;
	size_t next; /* __atomic: the first job no copier has taken */
};
#define COPY_CHUNK 32

static void copy_pages(void *arg)
{
	struct page_copy *c = arg;
	size_t i;

	while ((i = __atomic_fetch_add(&c->next, COPY_CHUNK, __ATOMIC_RELAXED)) < c->n) {
		size_t end = i + COPY_CHUNK < c->n ? i + COPY_CHUNK : c->n;

		for (; i < end; i++) {
			size_t p = c->pos[i];

			memcpy(c->list->data + p * GUEST_PAGE_SIZE,
			       c->ram + c->list->index[p] * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
		}
	}
}

static uint64_t bitmap_count(const uint64_t *bits, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	return n;
}

/*
 * Shortly before the pause, the guest running: take the guest's dirty pages
 * so far (KVM's log, which re-protects them) and copy them into the staging
 * list, so that the pause copies only the pages written after this (and the
 * VMM's own writes, whose marks can trail them).  A page the guest writes
 * during the copy comes out torn here, but it is in the pause's collect,
 * which copies it again.  r->dirty keeps the pages collected and not staged:
 * all of them when they would not fit the staging cap (the pause then sends
 * from RAM), none otherwise.  0 or -errno.
 */
static int copy_ahead(struct replication *r)
{
	struct page_list *list = &r->e.pages;
	const uint8_t *ram = r->vm->mem.host_base;
	uint64_t words = dirty_log_words(&r->vm->mem), total;
	int64_t n = dirty_log_collect_guest(&r->dl, r->dirty);
	size_t k = r->ahead;
	int ret;

	if (n < 0)
		return (int)n;
	total = bitmap_count(r->dirty, words); /* with what the sync left for this epoch */
	ret = page_list_resize(list, r->ahead + (size_t)total);
	if (ret)
		return ret == -ENOSPC ? 0 : ret;
	for (uint64_t w = 0; w < words; w++)
		for (uint64_t bits = r->dirty[w]; bits; bits &= bits - 1)
			list->index[k++] = w * 64 + (uint64_t)__builtin_ctzll(bits);
	for (size_t i = r->ahead; i < k; i++)
		memcpy(list->data + i * GUEST_PAGE_SIZE, ram + list->index[i] * GUEST_PAGE_SIZE,
		       GUEST_PAGE_SIZE);
	memset(r->dirty, 0, words * sizeof(uint64_t));
	r->ahead = k;
	return 0;
}

/*
 * At the pause: r->late holds the pages written since the copy ahead,
 * r->dirty any collected earlier and not staged.  Copy again the
 * staged pages written since, append the others, all copies shared with the
 * parked vCPU threads.  0; -ENOSPC over the staging cap, with r->dirty then
 * holding every page of the epoch (the caller sends them from RAM); -ENOMEM.
 */
static int stage_pages(struct replication *r, uint64_t words)
{
	struct page_list *list = &r->e.pages;
	struct page_copy c = {.list = list, .ram = r->vm->mem.host_base};
	size_t ahead = r->ahead, k = ahead, npos = 0, room;
	uint64_t add = 0;
	int ret;

	/* The pages to append: late ones not staged, and any left unstaged before. */
	for (uint64_t w = 0; w < words; w++) {
		r->late[w] |= r->dirty[w];
		r->dirty[w] = 0;
	}
	room = ahead + (size_t)bitmap_count(r->late, words); /* hits are among the staged */
	if (r->copy_pos_room < room) {
		size_t *pos = realloc(r->copy_pos, room * sizeof(*pos));

		if (!pos)
			return -ENOMEM;
		r->copy_pos = pos;
		r->copy_pos_room = room;
	}
	for (size_t i = 0; i < ahead; i++) {
		uint64_t page = list->index[i], mask = 1ULL << (page % 64);

		if (r->late[page / 64] & mask) {
			r->late[page / 64] &= ~mask; /* staged already: copy it again */
			r->copy_pos[npos++] = i;
		}
	}
	add = bitmap_count(r->late, words);
	ret = page_list_resize(list, ahead + (size_t)add);
	if (ret) {
		/* Sent from RAM instead: r->dirty becomes the epoch's whole set. */
		for (size_t i = 0; i < ahead; i++)
			r->dirty[list->index[i] / 64] |= 1ULL << (list->index[i] % 64);
		for (uint64_t w = 0; w < words; w++) {
			r->dirty[w] |= r->late[w];
			r->late[w] = 0;
		}
		return ret;
	}
	for (uint64_t w = 0; w < words; w++) {
		for (uint64_t bits = r->late[w]; bits; bits &= bits - 1) {
			r->copy_pos[npos++] = k;
			list->index[k++] = w * 64 + (uint64_t)__builtin_ctzll(bits);
		}
		r->late[w] = 0;
	}
	c.pos = r->copy_pos;
	c.n = npos;
	vm_pause_share_work(r->vm, copy_pages, &c);
	return 0;
}

/*
 * The checkpoint: with the guest and the loop still, take the dirty pages,
 * the disk writes and the state of epoch seq; tag what comes after with
 * seq + 1.  Pages beyond the staging cap are sent from RAM before the guest
 * resumes (the guest is slowed, memory stays bounded).
 */
static int checkpoint(struct replication *r, uint64_t seq, bool still)
{
	struct vm *vm = r->vm;
	uint64_t words = dirty_log_words(&vm->mem), pages = 0;
	bool direct = false;
	int64_t n;
	int ret = 0;

	uint64_t t[REPL_PAUSE_PARTS + 1];

	pthread_mutex_lock(&r->lock);
	take_pause(r); /* the previous epoch's, now that its vCPUs woke */
	pthread_mutex_unlock(&r->lock);
	t[0] = mono_ns();
	/* still: the VM has stopped (vCPUs joined, loop ended): nothing to pause. */
	if (!still && vm_pause_with_loop(vm))
		return -ECANCELED;
	vm_state_capture_start(vm); /* the vCPUs read their registers while we copy */
	vm_state_quiesce(vm);
	t[1] = mono_ns();
	r->e.seq = seq;
	/* No disk completion may reach RAM between the page capture and the state save. */
	pthread_mutex_lock(&r->disk.release_lock);
	n = dirty_log_collect(&r->dl, r->late);
	if (n < 0)
		ret = (int)n;
	t[2] = mono_ns();
	if (!ret) {
		ret = stage_pages(r, words);
		pages = r->e.pages.n;
		if (ret == -ENOSPC) {
			direct = true; /* too many for staging: sent from RAM below */
			pages = bitmap_count(r->dirty, words);
			ret = 0;
		}
	}
	t[3] = mono_ns();
	if (!ret)
		ret = vm_state_save(vm, &r->e.state, &r->e.state_len);
	if (repl_disk_take(&r->disk, &r->e, seq + 1) && !ret)
		ret = -ENOMEM;
	pthread_mutex_unlock(&r->disk.release_lock);
	if (seq == 1)
		output_buffer_hold(&vm->out, seq + 1);
	else
		output_buffer_set_epoch(&vm->out, seq + 1);
	if (!ret && direct) {
		/* Too much for staging: send this epoch from RAM now, guest still paused. */
		uint64_t le = htole64(seq);

		pthread_mutex_lock(&r->send_lock);
		ret = stream_write_section(r->sock, STREAM_SEC_EPOCH, &le, sizeof(le), &r->st);
		if (!ret)
			ret = stream_write_memory(r->sock, &vm->mem, r->dirty, STREAM_MEM_SEND_ZERO,
						  &r->st);
		if (!ret)
			ret = stream_write_section(r->sock, STREAM_SEC_DISK, r->e.disk,
						   r->e.disk_len, &r->st);
		if (!ret)
			ret = stream_write_section(r->sock, STREAM_SEC_STATE, r->e.state,
						   r->e.state_len, &r->st);
		if (!ret)
			ret = stream_write_section(r->sock, STREAM_SEC_EPOCH_END, &le, sizeof(le),
						   &r->st);
		r->last_send_ns = mono_ns();
		pthread_mutex_unlock(&r->send_lock);
	}
	memset(r->dirty, 0, words * sizeof(uint64_t));
	t[4] = mono_ns();
	pthread_mutex_lock(&r->lock);
	r->epoch = seq;
	r->last_pages = pages;
	r->last_ahead = r->ahead;
	if (!direct) { /* a direct epoch's pause is the send's */
		for (int i = 0; i < REPL_PAUSE_PARTS; i++)
			r->part_ns[i] += t[i + 1] - t[i];
		r->nr_parts++;
	}
	pthread_mutex_unlock(&r->lock);
	vm_state_capture_end(vm); /* if vm_state_save was not reached */
	vm_state_unquiesce(vm);
	if (!still) {
		event_loop_unpark(&vm->loop);
		vm_resume(vm);
	}
	if (!ret && !direct) {
		pthread_mutex_lock(&r->send_lock);
		ret = epoch_send(r->sock, &r->e, &r->st);
		r->last_send_ns = mono_ns();
		pthread_mutex_unlock(&r->send_lock);
	}
	epoch_clear(&r->e); /* the next epoch's copy ahead starts from empty */
	r->ahead = 0;
	if (!ret) {
		pthread_mutex_lock(&r->lock);
		r->epochs++;
		pthread_mutex_unlock(&r->lock);
	}
	return ret;
}

/* Sleep until deadline_ns, sending heartbeats meanwhile; wait for ACKs if too many are out. */
static int wait_next(struct replication *r, uint64_t deadline_ns, uint64_t next_seq)
{
	uint64_t hb_ns = r->hb.interval_ns;
	uint64_t last_hb = mono_ns();
	struct timespec ts;

	for (;;) {
		uint64_t now = mono_ns();
		bool ready;

		pthread_mutex_lock(&r->lock);
		if (r->stopping || r->standby_lost) {
			pthread_mutex_unlock(&r->lock);
			return -ECANCELED;
		}
		ready = now >= deadline_ns && next_seq - r->acked <= REPL_MAX_UNACKED;
		if (!ready) {
			uint64_t until = now + (hb_ns < 5000000ULL ? hb_ns : 5000000ULL);

			if (now < deadline_ns && deadline_ns < until)
				until = deadline_ns;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t rt = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec +
				      (until - now);
			ts.tv_sec = (time_t)(rt / 1000000000ULL);
			ts.tv_nsec = (long)(rt % 1000000000ULL);
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		}
		pthread_mutex_unlock(&r->lock);
		if (ready)
			return 0;
		if (heartbeat_due(&r->hb, last_hb, mono_ns())) {
			if (send_heartbeat(r))
				return -EPIPE;
			last_hb = mono_ns();
		}
	}
}

static void *replication_thread(void *arg)
{
	struct replication *r = arg;
	struct vm *vm = r->vm;
	uint64_t epoch_ns = (uint64_t)r->p.epoch_ms * 1000000ULL, seq = 0, next;
	int ret = -ECONNREFUSED;

	pthread_setname_np(pthread_self(), "replicate");
	for (int i = 0; i < CONNECT_TRIES && !should_stop(r); i++) {
		ret = tcp_connect(r->p.peer, 1000);
		if (ret >= 0 || ret == -EINVAL)
			break;
		usleep(200000);
	}
	if (ret < 0) {
		lose_standby(r,
			     ret == -EINVAL ? "bad standby address" : "cannot reach the standby");
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	r->sock = ret;
	pthread_mutex_unlock(&r->lock);
	/*
	 * If this process dies with a RELEASE still queued here (waiting for the
	 * wire, its output not yet out), the kernel must not deliver it after
	 * us: the standby would resume past output nobody saw.
	 */
	ret = tcp_abort_on_close(r->sock, true);
	if (ret)
		pr_warn("replication: SO_LINGER: %s", strerror(-ret));
	tcp_set_timeouts(r->sock, REPL_SYNC_TIMEOUT_MS, REPL_SYNC_TIMEOUT_MS);
	pr_info("replication to %s: syncing", r->p.peer);
	ret = sync_standby(r);
	if (ret) {
		char why[96];

		snprintf(why, sizeof(why), "the initial sync failed (%s)", strerror(-ret));
		lose_standby(r, why);
		return NULL;
	}
	/* From the first checkpoint on, a standby silent for the timeout is dead. */
	tcp_set_timeouts(r->sock, (int)r->p.failover_timeout_ms, (int)r->p.failover_timeout_ms);
	if (pthread_create(&r->ack_thread, NULL, ack_thread, r) == 0)
		r->ack_started = true;
	if (pthread_create(&r->hb_thread, NULL, heartbeat_thread, r) == 0)
		r->hb_started = true;
	pthread_mutex_lock(&r->lock);
	r->syncing = false;
	pthread_mutex_unlock(&r->lock);
	next = mono_ns();
	while (!ret) {
		uint64_t lead = epoch_ns / 4 < COPY_AHEAD_NS ? epoch_ns / 4 : COPY_AHEAD_NS;

		ret = wait_next(r, next - lead, seq + 1);
		if (!ret)
			ret = copy_ahead(r);
		if (!ret)
			ret = wait_next(r, next, seq + 1);
		if (ret)
			break;
		/* Keep the cadence: a late wake-up does not stretch every later epoch. */
		next += epoch_ns;
		if (next + epoch_ns < mono_ns())
			next = mono_ns(); /* far behind (slow link): start over from now */
		ret = checkpoint(r, ++seq, false);
	}
	if (ret != -ECANCELED)
		lose_standby(r, ret == -EAGAIN ? "the standby stopped reading" : "sending failed");
	(void)vm;
	return NULL;
}

int replicate_start(struct vm *vm, const struct repl_params *p)
{
	struct replication *r;
	int ret;

	if (vm->repl)
		return -EBUSY;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->vm = vm;
	r->p = *p;
	heartbeat_timing_init(&r->hb, p->failover_timeout_ms);
	r->sock = -1;
	r->syncing = true;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_mutex_init(&r->send_lock, NULL);
	r->e.pages.max = STAGING_MAX_PAGES;
	if (getrandom(&r->session, sizeof(r->session), 0) != sizeof(r->session))
		r->session = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
	set_note(r, "syncing the standby");
	r->dirty = calloc(dirty_log_words(&vm->mem), sizeof(uint64_t));
	r->late = calloc(dirty_log_words(&vm->mem), sizeof(uint64_t));
	ret = r->dirty && r->late ? repl_disk_init(&r->disk, vm) : -ENOMEM;
	if (ret) {
		free(r->dirty);
		free(r->late);
		free(r);
		return ret;
	}
	/* Output goes through the buffer from now on (transparent until the first checkpoint). */
	vm_output_buffered(vm);
	vm->repl = r;
	char host[256], port[32];
	if (tcp_parse_addr(p->peer, host, sizeof(host), port, sizeof(port))) {
		/* Said at once, not when the thread gets to it (a short guest may be gone). */
		pr_err("'%s' is not HOST:PORT", p->peer);
		lose_standby(r, "bad standby address");
		return 0;
	}
	ret = pthread_create(&r->thread, NULL, replication_thread, r);
	if (ret) {
		vm->repl = NULL;
		repl_disk_destroy(&r->disk);
		free(r->dirty);
		free(r->late);
		free(r);
		return -ret;
	}
	r->thread_started = true;
	if (vm->fence.w)
		pr_info("replication to %s every %u ms; failover after %u ms of silence; the "
			"witness lease decides which side runs",
			p->peer, p->epoch_ms, p->failover_timeout_ms);
	else
		pr_warn("replication to %s: no --witness: if the link is cut while both hosts "
			"live, both run the guest (see docs/REPLICATION.md)",
			p->peer);
	return 0;
}

static uint64_t percentile(uint32_t *v, unsigned n, unsigned pct)
{
	uint32_t sorted[PAUSE_HISTORY];

	if (!n)
		return 0;
	memcpy(sorted, v, n * sizeof(*v));
	for (unsigned i = 1; i < n; i++) /* n <= 512: insertion sort is fine */
		for (unsigned j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			uint32_t t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	return sorted[(n - 1) * pct / 100];
}

void replicate_get_status(struct vm *vm, struct repl_status *s)
{
	struct replication *r = vm->repl;

	memset(s, 0, sizeof(*s));
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	take_pause(r);
	unsigned n = r->nr_pause < PAUSE_HISTORY ? r->nr_pause : PAUSE_HISTORY;

	s->active = !r->standby_lost;
	s->protected_ = r->protected_;
	s->syncing = r->syncing;
	s->epoch = r->epoch;
	s->acked = r->acked;
	s->epochs = r->epochs;
	s->bytes = r->st.bytes;
	s->pause_p50_us = percentile(r->pause_us, n, 50);
	s->pause_p99_us = percentile(r->pause_us, n, 99);
	for (unsigned i = 0; i < n; i++)
		if (r->pause_us[i] > s->pause_max_us)
			s->pause_max_us = r->pause_us[i];
	s->last_pages = r->last_pages;
	s->last_ahead = r->last_ahead;
	for (int i = 0; i < REPL_PAUSE_PARTS && r->nr_parts; i++)
		s->pause_part_us[i] = r->part_ns[i] / r->nr_parts / 1000;
	snprintf(s->peer, sizeof(s->peer), "%s", r->p.peer);
	snprintf(s->note, sizeof(s->note), "%s", r->note);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&vm->out.lock);
	s->held_bytes = vm->out.held_bytes;
	s->hold_max_us = vm->out.hold_ns_max / 1000;
	pthread_mutex_unlock(&vm->out.lock);
}

/*
 * Wait, holding r->lock, until done(r, arg) or the standby is lost.  The
 * standby's heartbeats bound how long a dead one is waited for (the ack
 * thread gives up after the failover timeout of silence); a live one on a
 * slow link may take as long as its backlog needs, up to a sanity cap.
 */
static void wait_for_standby(struct replication *r,
			     bool (*done)(const struct replication *, uint64_t), uint64_t arg)
{
	uint64_t deadline = mono_ns() + (uint64_t)REPL_SHUTDOWN_WAIT_MS * 1000000ULL;

	while (!done(r, arg) && !r->standby_lost && !r->standby_gone && mono_ns() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
}

static bool acked_upto(const struct replication *r, uint64_t seq)
{
	return r->acked >= seq;
}

static bool standby_ended(const struct replication *r, uint64_t unused)
{
	(void)unused;
	return r->standby_ended;
}

/*
 * The VMM is told to stop (signal, `ctl quit`) while the guest is
 * protected: send the still guest's last checkpoint and wait for it, so
 * the standby resumes exactly where this side stopped.  True if it did.
 */
static bool hand_over(struct replication *r)
{
	uint64_t seq = r->epoch + 1;
	bool acked;

	if (checkpoint(r, seq, true))
		return false;
	pthread_mutex_lock(&r->lock);
	wait_for_standby(r, acked_upto, seq);
	acked = r->acked >= seq;
	pthread_mutex_unlock(&r->lock);
	if (acked)
		pr_info("replication: handed the guest over to %s at checkpoint %llu", r->p.peer,
			(unsigned long long)seq);
	return acked;
}

void replicate_stop(struct vm *vm)
{
	struct replication *r = vm->repl;
	bool on_purpose = vm->stop_reason == VM_STOP_POWEROFF || vm->stop_reason == VM_STOP_RESET;
	bool safe = false;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->thread_started)
		pthread_join(r->thread, NULL);
	pthread_mutex_lock(&r->lock);
	bool lost = r->standby_lost, was_protected = r->protected_;
	pthread_mutex_unlock(&r->lock);
	if (on_purpose && !lost && r->sock >= 0) {
		/* The guest is done: the standby must not bring it back.  Wait for it to say so. */
		pthread_mutex_lock(&r->send_lock);
		int ret = stream_write_section(r->sock, STREAM_SEC_SHUTDOWN, NULL, 0, &r->st);
		r->shutdown_sent = true;
		pthread_mutex_unlock(&r->send_lock);
		pthread_mutex_lock(&r->lock);
		if (!ret)
			wait_for_standby(r, standby_ended, 0);
		safe = r->standby_ended;
		lost = r->standby_lost;
		bool gone = r->standby_gone;
		pthread_mutex_unlock(&r->lock);
		if (!ret && !safe && !lost) {
			/*
			 * It had the SHUTDOWN and was alive (answering) until now: it ends
			 * rather than resume a guest whose primary was heard to the last.
			 */
			if (gone)
				pr_warn(
				    "replication: %s hung up without confirming the guest's end; "
				    "releasing the held output",
				    r->p.peer);
			else
				pr_warn(
				    "replication: %s has not confirmed the guest's end after %d s; "
				    "releasing the held output",
				    r->p.peer, REPL_SHUTDOWN_WAIT_MS / 1000);
			safe = true;
		}
	}
	bool handed_over = false;
	if (!on_purpose && !lost && was_protected)
		handed_over = hand_over(r);
	if (r->sock >= 0)
		shutdown(r->sock, SHUT_RDWR);
	if (r->ack_started)
		pthread_join(r->ack_thread, NULL);
	if (r->hb_started)
		pthread_join(r->hb_thread, NULL);
	/*
	 * Held output leaves only if no standby will replay it: the guest ended
	 * and the standby agreed, or the standby was lost long ago (then it was
	 * released already).  Otherwise the standby takes over and produces it.
	 */
	if (safe || handed_over || !was_protected)
		output_buffer_unhold(&vm->out);
	dirty_log_stop(&r->dl);
	repl_disk_destroy(&r->disk);
	if (r->sock >= 0) {
		/* An orderly end: every RELEASE sent had its output let out; send the rest. */
		tcp_abort_on_close(r->sock, false);
		close(r->sock);
	}
	epoch_free(&r->e);
	free(r->dirty);
	free(r->late);
	free(r->copy_pos);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->send_lock);
	free(r);
	vm->repl = NULL;
}
