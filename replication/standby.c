// SPDX-License-Identifier: MIT
/*
 * The standby: keep the primary's last committed checkpoint, ready to run;
 * take over when the primary falls silent.
 */
#include "replicate.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epoch.h"
#include "heartbeat.h"
#include "kvm_state.h"
#include "log.h"
#include "mono_time.h"
#include "tcp_socket.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "vm.h"
#include "vm_state.h"
#include "vm_stream.h"

enum standby_phase {
	SB_SYNCING,	/* receiving the initial copy: nothing to resume yet */
	SB_PROTECTING,	/* a checkpoint is committed: ready to take over */
	SB_TAKING_OVER, /* the primary is gone: loading the checkpoint */
	SB_ACTIVE,	/* the guest runs here now */
	SB_ENDED,	/* the primary's guest ended, or the stream broke: no takeover */
};

#define STAGED_MAX (REPL_MAX_UNACKED + 4)

struct standby {
	struct vm *vm;
	struct repl_params p;
	int sock;
	int wake_fd; /* eventfd on the loop: take over now */
	pthread_t rx, hb;
	bool rx_started, hb_started;

	pthread_mutex_t lock; /* everything below */
	pthread_mutex_t send_lock;
	bool send_broken; /* under send_lock: a send failed, send no more (no half message) */
	enum standby_phase phase;
	bool quit;		 /* the VM is ending: threads leave */
	bool failover_requested; /* `ctl failover` */
	uint64_t committed;	 /* last committed epoch (0: none) */
	void *state;		 /* its STATE tree */
	size_t state_len;
	uint64_t last_rx_ns, takeover_ns;
	struct stream_stats st;
	char why[128];
	/*
	 * Epochs received and acknowledged but not yet released by the primary:
	 * applied (committed) only on its RELEASE, so the checkpoint resumed is
	 * the one whose output the primary has let out.
	 */
	struct epoch staged[STAGED_MAX];
	unsigned staged_first, nr_staged;
	uint64_t received; /* last epoch received whole */
	uint64_t emitted;  /* the primary has confirmed the output up to this epoch gone out */
	uint64_t session;  /* the primary's name for this pairing (witness) */
};

static int send_msg(struct standby *sb, uint32_t type, uint64_t epoch)
{
	struct repl_msg m = {htole32(REPL_MSG_MAGIC), htole32(type), htole64(epoch)};
	ssize_t n;

	pthread_mutex_lock(&sb->send_lock);
	if (sb->send_broken)
		n = -1;
	else
		do
			n = send(sb->sock, &m, sizeof(m), MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
	sb->send_broken = n != sizeof(m);
	pthread_mutex_unlock(&sb->send_lock);
	return n == sizeof(m) ? 0 : -EPIPE;
}

/* A HEARTBEAT every interval (include/heartbeat.h), until the guest runs here or ends. */
static void *heartbeat_thread(void *arg)
{
	struct standby *sb = arg;
	struct heartbeat_timing t;
	uint64_t last = mono_ns();

	heartbeat_timing_init(&t, sb->p.failover_timeout_ms);
	pthread_setname_np(pthread_self(), "standby-hb");
	for (;;) {
		uint64_t committed;
		bool go_on;

		/* Naps of at most check_ns: a quitting standby does not wait out an interval. */
		mono_sleep_ns(heartbeat_nap_ns(&t, last, mono_ns()));
		pthread_mutex_lock(&sb->lock);
		go_on = !sb->quit && sb->phase <= SB_PROTECTING;
		committed = sb->committed;
		pthread_mutex_unlock(&sb->lock);
		if (!go_on)
			return NULL;
		if (!heartbeat_due(&t, last, mono_ns()))
			continue;
		if (send_msg(sb, REPL_MSG_HEARTBEAT, committed))
			return NULL;
		last = mono_ns();
	}
}

static int apply_disk(void *opaque, unsigned disk, uint32_t type, uint64_t offset, const void *data,
		      uint64_t len)
{
	struct vm *vm = opaque;

	return virtio_blk_replica_apply(vm->blks[disk], type, offset, data, len);
}

/* Released epoch e (staged, complete): make it the standby's image. */
static int commit(struct standby *sb, struct epoch *e)
{
	struct vm *vm = sb->vm;
	void *old;
	int ret;

	ret = epoch_disk_foreach(e->disk, e->disk_len, vm->nr_blks, apply_disk, vm);
	if (ret) {
		pr_err("standby: epoch %llu: cannot apply its disk writes: %s",
		       (unsigned long long)e->seq, strerror(-ret));
		return ret;
	}
	page_list_apply(&e->pages, &vm->mem);
	for (unsigned i = 0; e->disk_len && i < vm->nr_blks; i++) {
		ret = virtio_blk_replica_flush(vm->blks[i]);
		if (ret) {
			pr_err("standby: disk %u: flush: %s", i, strerror(-ret));
			return ret;
		}
	}
	pthread_mutex_lock(&sb->lock);
	old = sb->state;
	sb->state = e->state; /* the epoch's tree becomes the committed one */
	sb->state_len = e->state_len;
	e->state = NULL;
	sb->committed = e->seq;
	if (sb->phase == SB_SYNCING) {
		sb->phase = SB_PROTECTING;
		tcp_set_timeouts(sb->sock, (int)sb->p.failover_timeout_ms,
				 (int)sb->p.failover_timeout_ms);
		pr_info("standby: protecting (checkpoint %llu committed)",
			(unsigned long long)sb->committed);
	}
	pthread_mutex_unlock(&sb->lock);
	free(old);
	return 0;
}

/* EPOCH seq: receive it whole into a free staging slot, then acknowledge it. */
static int receive_epoch(struct standby *sb, uint64_t seq)
{
	uint64_t ram_pages = sb->vm->mem.ram_size / GUEST_PAGE_SIZE;
	struct epoch *e;
	int ret;

	if (seq != sb->received + 1) {
		pr_err("standby: epoch %llu after %llu", (unsigned long long)seq,
		       (unsigned long long)sb->received);
		return -EINVAL;
	}
	if (sb->nr_staged == STAGED_MAX) {
		pr_err("standby: the primary ran more than %d epochs ahead of its releases",
		       STAGED_MAX);
		return -EINVAL;
	}
	e = &sb->staged[(sb->staged_first + sb->nr_staged) % STAGED_MAX];
	ret = epoch_recv(sb->sock, seq, ram_pages, e, &sb->st);
	if (ret) {
		/* Not staged: the slot is cleared when it is next used. */
		pr_info("standby: epoch %llu broke off before its end (%s): discarded",
			(unsigned long long)seq, strerror(-ret));
		return ret;
	}
	sb->nr_staged++;
	sb->received = seq;
	/*
	 * An acknowledgement that cannot go out (the primary died and its host
	 * reset the connection) does not end the reading: RELEASEs it sent
	 * before dying may still be queued behind this epoch, and the takeover
	 * must resume after the output they let out.  Reading ends at EOF.
	 */
	if (send_msg(sb, REPL_MSG_ACK, seq))
		pr_info("standby: cannot acknowledge epoch %llu; reading what the primary sent "
			"until the connection ends",
			(unsigned long long)seq);
	return 0;
}

/* Has the primary hung up (or reset) the connection?  Data may still be queued before it. */
static bool primary_hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* RELEASE upto: the primary lets that output go; commit the staged epochs up to it. */
static int release_upto(struct standby *sb, uint64_t upto)
{
	bool gone = primary_hung_up(sb->sock);

	if (upto <= sb->committed || upto > sb->received) {
		pr_err("standby: release of epoch %llu (committed %llu, received %llu)",
		       (unsigned long long)upto, (unsigned long long)sb->committed,
		       (unsigned long long)sb->received);
		return -EINVAL;
	}
	while (sb->nr_staged && sb->staged[sb->staged_first].seq <= upto) {
		struct epoch *e = &sb->staged[sb->staged_first];
		int ret = commit(sb, e);

		if (ret)
			return ret;
		epoch_clear(e);
		sb->staged_first = (sb->staged_first + 1) % STAGED_MAX;
		sb->nr_staged--;
	}
	/* Released is released: an apply the primary's death interrupts is finished first. */
	if (primary_hung_up(sb->sock))
		pr_info("standby: the primary went away %s epoch %llu was applied",
			gone ? "before" : "while", (unsigned long long)upto);
	return 0;
}

/* The primary is gone (or `ctl failover`): hand over to the loop thread. */
static void take_over(struct standby *sb, const char *why)
{
	uint64_t one = 1;

	pthread_mutex_lock(&sb->lock);
	sb->phase = SB_TAKING_OVER;
	sb->takeover_ns = mono_ns();
	snprintf(sb->why, sizeof(sb->why), "%s", why);
	pthread_mutex_unlock(&sb->lock);
	if (write(sb->wake_fd, &one, sizeof(one)) < 0) {
	}
}

static void end_standby(struct standby *sb, int status, const char *why)
{
	pthread_mutex_lock(&sb->lock);
	sb->phase = SB_ENDED;
	snprintf(sb->why, sizeof(sb->why), "%s", why);
	pthread_mutex_unlock(&sb->lock);
	vm_request_stop(sb->vm, status ? VM_STOP_ERROR : VM_STOP_POWEROFF, status);
}

/* The replication stream, section by section, until it ends one way or another. */
static void *rx_thread(void *arg)
{
	struct standby *sb = arg;
	struct vm *vm = sb->vm;
	uint64_t v;
	uint32_t type;
	uint64_t len;
	int ret;

	pthread_setname_np(pthread_self(), "standby-rx");
	for (;;) {
		ret = stream_read_section(sb->sock, &type, &len, &sb->st);
		if (ret)
			break;
		pthread_mutex_lock(&sb->lock);
		sb->last_rx_ns = mono_ns();
		pthread_mutex_unlock(&sb->lock);
		switch (type) {
		case STREAM_SEC_MEMORY:
			/* Straight into RAM only while syncing: after a commit, pages come in
			 * epochs. */
			if (sb->committed) {
				pr_err("standby: memory outside an epoch after a checkpoint");
				ret = -EINVAL;
			} else {
				ret = stream_read_memory(sb->sock, len, &vm->mem, &sb->st);
			}
			break;
		case STREAM_SEC_HEARTBEAT:
			ret = epoch_read_u64(sb->sock, len, &v, &sb->st);
			break;
		case STREAM_SEC_EPOCH:
			ret = epoch_read_u64(sb->sock, len, &v, &sb->st);
			if (!ret)
				ret = receive_epoch(sb, v);
			break;
		case STREAM_SEC_SESSION:
			ret = epoch_read_u64(sb->sock, len, &sb->session, &sb->st);
			break;
		case STREAM_SEC_RELEASE:
			ret = epoch_read_u64(sb->sock, len, &v, &sb->st);
			if (!ret)
				ret = release_upto(sb, v);
			break;
		case STREAM_SEC_EMITTED:
			ret = epoch_read_u64(sb->sock, len, &v, &sb->st);
			if (!ret && (v < sb->emitted || v > sb->committed)) {
				pr_err("standby: output of epoch %llu confirmed (released %llu)",
				       (unsigned long long)v, (unsigned long long)sb->committed);
				ret = -EINVAL;
			}
			if (!ret)
				sb->emitted = v;
			break;
		case STREAM_SEC_DROPPED:
			pr_err(
			    "standby: the primary gave up on this standby and runs on unprotected; "
			    "not taking over");
			shutdown(sb->sock, SHUT_RDWR);
			end_standby(sb, 1, "dropped by the primary");
			return NULL;
		case STREAM_SEC_SHUTDOWN:
			pr_info("standby: the primary's guest ended; nothing to take over");
			/* Its held output waits for this word (best effort: a dead primary has
			 * none). */
			send_msg(sb, REPL_MSG_ENDED, sb->committed);
			shutdown(sb->sock, SHUT_RDWR);
			end_standby(sb, 0, "the primary's guest ended");
			return NULL;
		default:
			pr_err("standby: unexpected %s section", stream_section_name(type));
			ret = -EINVAL;
		}
		if (ret)
			break;
	}
	pthread_mutex_lock(&sb->lock);
	bool quit = sb->quit, forced = sb->failover_requested;
	uint64_t committed = sb->committed;
	pthread_mutex_unlock(&sb->lock);
	if (quit)
		return NULL;
	if (ret == -EINVAL && !forced) {
		/* The primary is alive but its stream is wrong: do not race it for the guest. */
		end_standby(sb, 1, "the replication stream is damaged");
		pr_err("standby: damaged replication stream; giving up without taking over");
		return NULL;
	}
	if (!committed) {
		end_standby(sb, 1, "the primary went away before the first checkpoint");
		pr_err("standby: the primary went away before the first checkpoint: nothing to "
		       "resume");
		return NULL;
	}
	/* With a witness, only the holder of the lease may run the guest: wait for the primary's.
	 */
	if (fence_acquire(&vm->fence, vm, fence_takeover_wait_ms(&vm->fence))) {
		end_standby(sb, 1,
			    "the primary still holds the witness lease (or etcd is unreachable)");
		pr_err("standby: not taking over: the guest may still run on the primary");
		return NULL;
	}
	if (fence_check_session(&vm->fence, sb->session)) {
		end_standby(sb, 1, "this copy is stale: the primary ran on unprotected after it");
		pr_err("standby: not taking over: the witness does not name this standby's session "
		       "(the primary went on without it, or never said it was protected)");
		return NULL;
	}
	if (sb->nr_staged)
		pr_info(
		    "standby: %u epoch(s) after checkpoint %llu arrived but were never released: "
		    "discarded",
		    sb->nr_staged, (unsigned long long)committed);
	if (sb->emitted < committed && !forced)
		/* The one window of output commit (docs/REPLICATION.md): said, not hidden. */
		pr_warn("standby: the primary died while letting out the output of epoch %llu "
			"(released, its going out not confirmed): some of it may be lost",
			(unsigned long long)committed);
	take_over(sb, forced	       ? "failover requested"
		      : ret == -EAGAIN ? "primary silent"
				       : "primary connection lost");
	return NULL;
}

/* On the loop thread: the checkpoint becomes the running guest. */
static void on_takeover(void *opaque, uint32_t events)
{
	struct standby *sb = opaque;
	struct vm *vm = sb->vm;
	uint64_t v;
	int ret;

	(void)events;
	if (read(sb->wake_fd, &v, sizeof(v)) < 0)
		return;
	ret = vm_state_load(vm, sb->state, KVM_STATE_CLOCK_ELAPSED);
	if (ret) {
		pr_err("standby: cannot load checkpoint %llu: %s",
		       (unsigned long long)sb->committed, strerror(-ret));
		end_standby(sb, 1, "the checkpoint would not load");
		return;
	}
	/* Writes the checkpoint's guest was waiting on are on the replica: complete them. */
	for (unsigned i = 0; i < vm->nr_blks; i++)
		virtio_blk_release_completions(vm->blks[i], UINT64_MAX);
	for (unsigned i = 0; i < vm->nr_nets; i++)
		virtio_net_announce(vm->nets[i]);
	if (vm_start(vm))
		return;
	pthread_mutex_lock(&sb->lock);
	sb->phase = SB_ACTIVE;
	uint64_t ms = (mono_ns() - sb->takeover_ns) / 1000000ULL;
	pthread_mutex_unlock(&sb->lock);
	pr_warn(
	    "standby: %s: took over from checkpoint %llu (%llu ms to load); the guest runs here "
	    "now, unprotected",
	    sb->why, (unsigned long long)sb->committed, (unsigned long long)ms);
}

static void standby_quit(struct vm *vm)
{
	struct standby *sb = vm->standby;

	pthread_mutex_lock(&sb->lock);
	sb->quit = true;
	pthread_mutex_unlock(&sb->lock);
	shutdown(sb->sock, SHUT_RDWR);
	if (sb->rx_started)
		pthread_join(sb->rx, NULL);
	if (sb->hb_started)
		pthread_join(sb->hb, NULL);
	sb->rx_started = sb->hb_started = false;
	/* After a takeover this VM may have a standby of its own. */
	replicate_stop(vm);
}

void standby_request_failover(struct vm *vm)
{
	struct standby *sb = vm->standby;

	if (!sb)
		return;
	pthread_mutex_lock(&sb->lock);
	sb->failover_requested = true;
	pthread_mutex_unlock(&sb->lock);
	shutdown(sb->sock, SHUT_RDWR);
}

void standby_get_status(struct vm *vm, struct standby_status *s)
{
	struct standby *sb = vm->standby;
	static const char *const names[] = {"syncing", "protecting", "taking over", "active",
					    "ended"};

	memset(s, 0, sizeof(*s));
	if (!sb)
		return;
	pthread_mutex_lock(&sb->lock);
	snprintf(s->phase, sizeof(s->phase), "%s", names[sb->phase]);
	s->committed = sb->committed;
	s->bytes = sb->st.bytes;
	s->since_rx_ms = sb->last_rx_ns ? (mono_ns() - sb->last_rx_ns) / 1000000ULL : 0;
	s->active = sb->phase == SB_ACTIVE;
	pthread_mutex_unlock(&sb->lock);
}

int standby_main(struct vm_options *opts)
{
	struct standby sb = {.sock = -1, .wake_fd = -1};
	struct vm vm;
	char err[512];
	int lfd, ret, status;

	replicate_params_from_options(opts, &sb.p);
	lfd = tcp_listen(opts->listen);
	if (lfd < 0) {
		if (lfd != -EINVAL)
			pr_err("--listen %s: %s", opts->listen, strerror(-lfd));
		return 2;
	}
	pr_info("standby: waiting for a primary on %s", opts->listen);
	sb.sock = tcp_accept(lfd);
	close(lfd);
	if (sb.sock < 0) {
		pr_err("standby: accept: %s", strerror(-sb.sock));
		return 1;
	}
	/* Until the first checkpoint, slowness is not death; after it, silence is. */
	tcp_set_timeouts(sb.sock, REPL_SYNC_TIMEOUT_MS, REPL_SYNC_TIMEOUT_MS);
	if (vm_stream_recv_config(sb.sock, opts, &sb.st, err, sizeof(err))) {
		pr_err("standby: %s", err);
		close(sb.sock);
		return 1;
	}
	if (vm_create(&vm, opts)) {
		close(sb.sock);
		return vm.input_error ? 2 : 1;
	}
	pthread_mutex_init(&sb.lock, NULL);
	pthread_mutex_init(&sb.send_lock, NULL);
	sb.vm = &vm;
	sb.phase = SB_SYNCING;
	vm.standby = &sb;
	vm.on_stop = standby_quit;
	sb.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = sb.wake_fd < 0 ? -errno
			     : event_loop_add(&vm.loop, sb.wake_fd, EPOLLIN, on_takeover, &sb);
	if (!ret)
		ret = -pthread_create(&sb.rx, NULL, rx_thread, &sb);
	sb.rx_started = !ret;
	if (!ret)
		sb.hb_started = pthread_create(&sb.hb, NULL, heartbeat_thread, &sb) == 0;
	if (ret) {
		pr_err("standby: %s", strerror(-ret));
		vm_request_stop(&vm, VM_STOP_ERROR, 1);
	}
	pr_info("standby: syncing from the primary");
	(void)vm_loop(&vm);
	status = vm.exit_status;
	vm_destroy(&vm);
	if (sb.sock >= 0)
		close(sb.sock);
	if (sb.wake_fd >= 0)
		close(sb.wake_fd);
	for (unsigned i = 0; i < STAGED_MAX; i++)
		epoch_free(&sb.staged[i]);
	free(sb.state);
	pthread_mutex_destroy(&sb.lock);
	pthread_mutex_destroy(&sb.send_lock);
	return status;
}
