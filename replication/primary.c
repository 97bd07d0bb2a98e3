// SPDX-License-Identifier: MIT
/*
 * The primary: sync the standby, then checkpoint the running guest every
 * epoch and release each epoch's output when the standby acknowledges it.
 */
#include "replicate.h"

#include <endian.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dirty_log.h"
#include "epoch.h"
#include "log.h"
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
	bool standby_closed; /* EOF after our SHUTDOWN: it will not take over */
	uint64_t epoch, acked, epochs;
	uint32_t pause_us[PAUSE_HISTORY];
	unsigned nr_pause;
	uint64_t last_pages;
	char note[128];
	uint64_t session;   /* names this pairing in the witness */
	bool session_named; /* the witness says this session's standby may take over */

	pthread_mutex_t send_lock; /* the socket's write side */
	uint64_t last_send_ns;	   /* under send_lock: when the standby last got anything */
	pthread_t hb_thread;
	bool hb_started;
	struct stream_stats st;
	struct dirty_log dl;
	uint64_t *dirty;
	struct epoch e;
	struct repl_disk disk; /* the disk writes of the epoch in progress */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

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
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
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

static int send_u64_section(struct replication *r, enum stream_section type, uint64_t v)
{
	uint64_t le = htole64(v);
	int ret;

	pthread_mutex_lock(&r->send_lock);
	ret = stream_write_section(r->sock, type, &le, sizeof(le), &r->st);
	r->last_send_ns = now_ns();
	pthread_mutex_unlock(&r->send_lock);
	return ret;
}

static int send_release(struct replication *r, uint64_t epoch)
{
	return send_u64_section(r, STREAM_SEC_RELEASE, epoch);
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
			pthread_mutex_lock(&r->lock);
			if (n == 0 && r->stopping)
				r->standby_closed = true;
			pthread_cond_broadcast(&r->cond);
			pthread_mutex_unlock(&r->lock);
			lose_standby(r, n == 0		  ? "the standby closed the connection"
					: errno == EAGAIN ? "the standby stopped answering"
							  : strerror(errno));
			return NULL;
		}
		if (le32toh(m.magic) != REPL_MSG_MAGIC) {
			lose_standby(r, "garbage from the standby");
			return NULL;
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
		 * epoch's output goes out now (it will resume from here), then let it
		 * go: the only moment both could disagree is between these two calls.
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
		if (send_release(r, epoch)) {
			lose_standby(r, "sending failed");
			return NULL;
		}
		output_buffer_release(&r->vm->out, epoch);
		repl_disk_release(&r->disk, epoch);
	}
}

/* ---- sending ---- */

static int send_heartbeat(struct replication *r)
{
	return send_u64_section(r, STREAM_SEC_HEARTBEAT, r->epoch);
}

/*
 * Heartbeats on their own thread: a checkpoint pause or a slow epoch must
 * not look like death to the standby.  Sends only when the link has been
 * idle for the heartbeat interval (an epoch in flight is proof of life).
 */
static void *heartbeat_thread(void *arg)
{
	struct replication *r = arg;
	uint64_t hb_ns = (uint64_t)r->p.failover_timeout_ms * 1000000ULL / 4;
	struct timespec ts = {.tv_sec = (time_t)(hb_ns / 2 / 1000000000ULL),
			      .tv_nsec = (long)(hb_ns / 2 % 1000000000ULL)};

	pthread_setname_np(pthread_self(), "repl-hb");
	while (!should_stop(r)) {
		bool idle;

		nanosleep(&ts, NULL);
		/* trylock: if an epoch is being written, the standby is hearing from us. */
		if (pthread_mutex_trylock(&r->send_lock))
			continue;
		idle = now_ns() - r->last_send_ns >= hb_ns;
		pthread_mutex_unlock(&r->send_lock);
		if (idle && send_heartbeat(r))
			break;
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
	if (vm_pause(vm) || !event_loop_park(&vm->loop)) {
		vm_resume(vm);
		return -ECANCELED;
	}
	vm_state_quiesce(vm);
	repl_disk_start(&r->disk);
	ret = dirty_log_start(&r->dl, vm->vm_fd, &vm->mem);
	vm_state_unquiesce(vm);
	event_loop_unpark(&vm->loop);
	vm_resume(vm);
	if (!ret)
		ret = vm_stream_send_begin(vm, r->sock, &r->st);
	if (!ret)
		ret = send_u64_section(r, STREAM_SEC_SESSION, r->session);
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

static void record_pause(struct replication *r, uint64_t ns, uint64_t pages)
{
	pthread_mutex_lock(&r->lock);
	r->pause_us[r->nr_pause++ % PAUSE_HISTORY] = (uint32_t)(ns / 1000);
	r->last_pages = pages;
	pthread_mutex_unlock(&r->lock);
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
	uint64_t t0 = now_ns(), words = dirty_log_words(&vm->mem), pages = 0;
	bool direct = false;
	int64_t n;
	int ret = 0;

	/* still: the VM has stopped (vCPUs joined, loop ended): nothing to pause. */
	if (!still && (vm_pause(vm) || !event_loop_park(&vm->loop))) {
		vm_resume(vm);
		return -ECANCELED;
	}
	vm_state_quiesce(vm);
	epoch_clear(&r->e);
	r->e.seq = seq;
	/* No disk completion may reach RAM between the page capture and the state save. */
	pthread_mutex_lock(&r->disk.release_lock);
	n = dirty_log_collect(&r->dl, r->dirty);
	if (n < 0)
		ret = (int)n;
	for (uint64_t w = 0; !ret && w < words; w++) {
		uint64_t bits = r->dirty[w];

		while (bits && !direct) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			ret =
			    page_list_add(&r->e.pages, p, vm->mem.host_base + p * GUEST_PAGE_SIZE);
			if (ret == -ENOSPC) {
				direct = true;
				ret = 0;
			}
			pages++;
		}
	}
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
		pthread_mutex_unlock(&r->send_lock);
	}
	memset(r->dirty, 0, words * sizeof(uint64_t));
	pthread_mutex_lock(&r->lock);
	r->epoch = seq;
	pthread_mutex_unlock(&r->lock);
	vm_state_unquiesce(vm);
	if (!still) {
		event_loop_unpark(&vm->loop);
		vm_resume(vm);
	}
	record_pause(r, now_ns() - t0, pages);
	if (!ret && !direct) {
		pthread_mutex_lock(&r->send_lock);
		ret = epoch_send(r->sock, &r->e, &r->st);
		r->last_send_ns = now_ns();
		pthread_mutex_unlock(&r->send_lock);
	}
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
	uint64_t hb_ns = (uint64_t)r->p.failover_timeout_ms * 1000000ULL / 4;
	uint64_t last_hb = now_ns();
	struct timespec ts;

	for (;;) {
		uint64_t now = now_ns();
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
		if (now_ns() - last_hb >= hb_ns) {
			if (send_heartbeat(r))
				return -EPIPE;
			last_hb = now_ns();
		}
	}
}

static void *replication_thread(void *arg)
{
	struct replication *r = arg;
	struct vm *vm = r->vm;
	uint64_t epoch_ns = (uint64_t)r->p.epoch_ms * 1000000ULL, seq = 0, next;
	int one = 1, ret = -ECONNREFUSED;

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
	tcp_set_timeouts(r->sock, REPL_SYNC_TIMEOUT_MS, REPL_SYNC_TIMEOUT_MS);
	setsockopt(r->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pr_info("replication to %s: syncing", r->p.peer);
	ret = sync_standby(r);
	if (ret) {
		lose_standby(r, "the initial sync failed");
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
	next = now_ns();
	while (!ret) {
		ret = wait_next(r, next, seq + 1);
		if (ret)
			break;
		/* Keep the cadence: a late wake-up does not stretch every later epoch. */
		next += epoch_ns;
		if (next + epoch_ns < now_ns())
			next = now_ns(); /* far behind (slow link): start over from now */
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
	r->sock = -1;
	r->syncing = true;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_mutex_init(&r->send_lock, NULL);
	r->e.pages.max = STAGING_MAX_PAGES;
	if (getrandom(&r->session, sizeof(r->session), 0) != sizeof(r->session))
		r->session = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	set_note(r, "syncing the standby");
	r->dirty = calloc(dirty_log_words(&vm->mem), sizeof(uint64_t));
	ret = r->dirty ? repl_disk_init(&r->disk, vm) : -ENOMEM;
	if (ret) {
		free(r->dirty);
		free(r);
		return ret;
	}
	/* Output goes through the buffer from now on (transparent until the first checkpoint). */
	vm_output_buffered(vm);
	vm->repl = r;
	ret = pthread_create(&r->thread, NULL, replication_thread, r);
	if (ret) {
		vm->repl = NULL;
		repl_disk_destroy(&r->disk);
		free(r->dirty);
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
	snprintf(s->peer, sizeof(s->peer), "%s", r->p.peer);
	snprintf(s->note, sizeof(s->note), "%s", r->note);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&vm->out.lock);
	s->held_bytes = vm->out.held_bytes;
	s->hold_max_us = vm->out.hold_ns_max / 1000;
	pthread_mutex_unlock(&vm->out.lock);
}

/*
 * The VMM is told to stop (signal, `ctl quit`) while the guest is
 * protected: send the still guest's last checkpoint and wait for it, so
 * the standby resumes exactly where this side stopped.  True if it did.
 */
static bool hand_over(struct replication *r)
{
	uint64_t seq = r->epoch + 1, deadline;
	bool acked;

	if (checkpoint(r, seq, true))
		return false;
	deadline = now_ns() + (uint64_t)r->p.failover_timeout_ms * 1000000ULL;
	pthread_mutex_lock(&r->lock);
	while (r->acked < seq && !r->standby_lost && now_ns() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
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
		/* The guest is done: the standby must not bring it back.  Wait for it to hang up.
		 */
		pthread_mutex_lock(&r->send_lock);
		int ret = stream_write_section(r->sock, STREAM_SEC_SHUTDOWN, NULL, 0, &r->st);
		pthread_mutex_unlock(&r->send_lock);
		pthread_mutex_lock(&r->lock);
		uint64_t deadline = now_ns() + (uint64_t)r->p.failover_timeout_ms * 1000000ULL;
		while (!ret && !r->standby_closed && !r->standby_lost && now_ns() < deadline) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		}
		safe = r->standby_closed;
		pthread_mutex_unlock(&r->lock);
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
	if (r->sock >= 0)
		close(r->sock);
	epoch_free(&r->e);
	free(r->dirty);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->send_lock);
	free(r);
	vm->repl = NULL;
}
