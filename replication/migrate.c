// SPDX-License-Identifier: MIT
/* Live migration: pre-copy passes on a thread of their own, a short stop-and-copy, and the
 * destination. */
#include "migrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "dirty_log.h"
#include "kvm_state.h"
#include "log.h"
#include "mono_time.h"
#include "tcp_socket.h"
#include "virtio_net.h"
#include "vm.h"
#include "vm_stream.h"

#define CONNECT_TIMEOUT_MS 5000
#define SEND_TIMEOUT_MS	   10000 /* a destination that takes nothing for this long is gone */
#define ACK_TIMEOUT_MS	   30000 /* loading the state on the other side */
#define RECV_TIMEOUT_MS	   30000 /* destination: a source silent this long is gone */

struct migration {
	struct vm *vm;
	struct migrate_params p;
	int reply_fd;
	int sock;
	pthread_t thread;
	bool running; /* guarded by lock, as is progress */
	bool joined;
	pthread_mutex_t lock;
	struct migrate_progress progress;
};

int migrate_parse(int argc, char **argv, struct migrate_params *p, char *err, size_t errlen)
{
	*p = (struct migrate_params){.downtime_ms = MIGRATE_DEFAULT_DOWNTIME_MS,
				     .max_passes = MIGRATE_DEFAULT_MAX_PASSES};
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		char *end;
		unsigned long long v = 0;
		bool has_value = !strcmp(a, "--downtime-ms") || !strcmp(a, "--bandwidth") ||
				 !strcmp(a, "--max-passes");

		if (has_value) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "migrate: %s needs a value", a);
				return -EINVAL;
			}
			errno = 0;
			v = strtoull(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || v == 0 || v > 1000000) {
				snprintf(err, errlen,
					 "migrate: %s '%s' is not a number from 1 to 1000000", a,
					 argv[i]);
				return -EINVAL;
			}
		}
		if (!strcmp(a, "--downtime-ms")) {
			p->downtime_ms = (unsigned)v;
		} else if (!strcmp(a, "--bandwidth")) {
			p->bandwidth = v << 20; /* MiB/s */
		} else if (!strcmp(a, "--max-passes")) {
			p->max_passes = (unsigned)v;
		} else if (!strcmp(a, "--force")) {
			p->force = true;
		} else if (a[0] != '-' && !p->dest[0] && strlen(a) < sizeof(p->dest)) {
			strcpy(p->dest, a);
		} else {
			snprintf(err, errlen,
				 "migrate: usage: migrate HOST:PORT [--downtime-ms N] "
				 "[--bandwidth MIB_S] [--max-passes N] [--force]");
			return -EINVAL;
		}
	}
	if (!p->dest[0]) {
		snprintf(err, errlen, "migrate: no destination HOST:PORT");
		return -EINVAL;
	}
	return 0;
}

static void set_progress(struct migration *m, unsigned pass, uint64_t remaining, uint64_t rate,
			 uint64_t expected_ms, uint64_t bytes)
{
	pthread_mutex_lock(&m->lock);
	m->progress = (struct migrate_progress){
	    .active = true,
	    .pass = pass,
	    .remaining_pages = remaining,
	    .rate = rate,
	    .expected_downtime_ms = expected_ms,
	    .bytes = bytes,
	};
	pthread_mutex_unlock(&m->lock);
}

/* Wait for the destination's next answer that is not a pass acknowledgement. */
static int recv_ack(int sock, char want)
{
	char ack;
	ssize_t n;

	do {
		do
			n = recv(sock, &ack, 1, 0);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			return n == 0 ? -ECONNRESET : -errno;
	} while (ack == VM_STREAM_ACK_PASS && want != VM_STREAM_ACK_PASS);
	return ack == want ? 0 : -EREMOTEIO;
}

/* Send one MEMORY pass of the pages in dirty (NULL: all); returns its rate in bytes/s. */
static int send_pass(struct migration *m, const uint64_t *dirty, struct stream_stats *st,
		     uint64_t *rate)
{
	uint64_t t0 = mono_ns(), b0 = st->bytes, dt;
	int ret = stream_write_memory(m->sock, &m->vm->mem, dirty,
				      STREAM_MEM_LIVE | (dirty ? STREAM_MEM_SEND_ZERO : 0), st);

	/*
	 * Until the destination has the pass in its guest memory, the pass is
	 * still ahead of whatever is sent next (socket buffers on both sides
	 * hold megabytes): the stop-and-copy would wait behind it with the
	 * guest stopped, and the rate would count buffering as link speed.
	 */
	if (!ret)
		ret = recv_ack(m->sock, VM_STREAM_ACK_PASS);
	dt = mono_ns() - t0;
	/* A tiny pass says little about the link: keep the previous estimate. */
	if (!ret && st->bytes - b0 >= (1u << 20) && dt)
		*rate = (st->bytes - b0) * 1000000000ULL / dt;
	return ret;
}

/* Pause everything, send the rest, wait for the destination.  0 when it runs the guest. */
static int stop_and_copy(struct migration *m, struct dirty_log *dl, uint64_t *dirty,
			 struct stream_stats *st, uint64_t *downtime_ns)
{
	struct vm *vm = m->vm;
	uint64_t t0 = mono_ns();
	int ret;

	if (vm_pause_with_loop(vm))
		return -ECANCELED; /* the VM is stopping (guest powered off meanwhile) */
	ret = dirty_log_collect(dl, dirty) < 0 ? -EIO : 0;
	if (!ret)
		ret = vm_stream_send_end(vm, m->sock, dirty, st);
	if (!ret) {
		const char go = MIGRATE_ACK_GO;

		tcp_set_timeouts(m->sock, ACK_TIMEOUT_MS, SEND_TIMEOUT_MS);
		ret = recv_ack(m->sock, MIGRATE_ACK_STARTED);
		/* Queued, the byte reaches a live destination; unqueued, it runs nothing. */
		if (!ret && send(m->sock, &go, 1, MSG_NOSIGNAL) != 1)
			ret = -errno;
	}
	*downtime_ns = mono_ns() - t0;
	if (ret) {
		/* The destination does not run the guest: it carries on here. */
		event_loop_unpark(&vm->loop);
		vm_resume(vm);
		return ret;
	}
	vm_request_stop(vm, VM_STOP_MIGRATED, 0);
	event_loop_unpark(&vm->loop);
	return 0;
}

static const char *why(int ret)
{
	switch (ret) {
	case -EREMOTEIO:
		return "the destination could not load the VM";
	case -ECONNRESET:
	case -EPIPE:
		return "the destination closed the connection";
	case -EAGAIN:
		return "the destination stopped answering";
	case -ECANCELED:
		return "the VM stopped meanwhile";
	default:
		return strerror(-ret);
	}
}

static void *migrate_thread(void *arg)
{
	struct migration *m = arg;
	struct vm *vm = m->vm;
	struct stream_stats st = {.limit_bps = m->p.bandwidth};
	struct dirty_log dl = {0};
	uint64_t *dirty = NULL, rate = 100ULL << 20, downtime_ns = 0, t_start = mono_ns();
	uint64_t words = dirty_log_words(&vm->mem);
	unsigned pass = 0;
	int ret;

	pthread_setname_np(pthread_self(), "migrate");
	ret = tcp_connect(m->p.dest, CONNECT_TIMEOUT_MS);
	if (ret < 0) {
		control_reply(m->reply_fd, "error: cannot connect to %s: %s", m->p.dest,
			      strerror(-ret));
		goto out;
	}
	m->sock = ret;
	tcp_set_timeouts(m->sock, SEND_TIMEOUT_MS, SEND_TIMEOUT_MS);
	dirty = calloc(words, sizeof(*dirty));
	ret = dirty ? 0 : -ENOMEM;
	if (!ret)
		ret = vm_stream_send_begin(vm, m->sock, &st);
	if (!ret)
		ret = dirty_log_start(&dl, vm->vm_fd, &vm->mem);
	if (!ret)
		ret = send_pass(m, NULL, &st, &rate);
	uint64_t last_n = dirty_log_words(&vm->mem) * 64; /* the first pass sent everything */

	while (!ret) {
		int64_t n = dirty_log_collect(&dl, dirty);
		uint64_t expected_ms;

		if (n < 0) {
			ret = (int)n;
			break;
		}
		expected_ms = (uint64_t)n * GUEST_PAGE_SIZE * 1000 / (rate ? rate : 1);
		set_progress(m, pass, (uint64_t)n, rate, expected_ms, st.bytes);
		control_reply(
		    m->reply_fd,
		    "pass %u: %llu MiB sent, %lld pages dirty, %.1f MiB/s, expected downtime "
		    "%llu ms",
		    pass, (unsigned long long)(st.bytes >> 20), (long long)n,
		    (double)rate / (1 << 20), (unsigned long long)expected_ms);
		/*
		 * It fits: stop, unless another pass still pays (the last one
		 * at least halved the pages left and they would take a
		 * millisecond or more); the pause is what the guest notices.
		 */
		if (expected_ms <= m->p.downtime_ms &&
		    (expected_ms < 1 || (uint64_t)n * 2 > last_n || pass + 1 >= m->p.max_passes))
			break;
		last_n = (uint64_t)n;
		if (++pass >= m->p.max_passes) {
			if (m->p.force)
				break;
			ret = -ETIME;
			control_reply(
			    m->reply_fd,
			    "error: no convergence after %u passes: %lld pages dirty per pass at "
			    "%.1f MiB/s would stop the guest for %llu ms (> %u); the VM keeps "
			    "running "
			    "here (retry with --force, a larger --downtime-ms or more --bandwidth)",
			    pass, (long long)n, (double)rate / (1 << 20),
			    (unsigned long long)expected_ms, m->p.downtime_ms);
			goto out;
		}
		ret = send_pass(m, dirty, &st, &rate);
		memset(dirty, 0, words * sizeof(*dirty));
	}
	if (!ret)
		ret = stop_and_copy(m, &dl, dirty, &st, &downtime_ns);
	if (ret) {
		control_reply(m->reply_fd,
			      "error: migration to %s failed: %s; the VM keeps running here",
			      m->p.dest, why(ret));
		goto out;
	}
	control_reply(m->reply_fd,
		      "migrated to %s: %u passes, %llu MiB in %.0f ms, downtime %.1f ms", m->p.dest,
		      pass + 1, (unsigned long long)(st.bytes >> 20),
		      (double)(mono_ns() - t_start) / 1e6, (double)downtime_ns / 1e6);
	control_reply(m->reply_fd, "ok");
	pr_info("migrated to %s (downtime %.1f ms)", m->p.dest, (double)downtime_ns / 1e6);
out:
	if (ret)
		pr_warn("migration to %s failed: %s; running on", m->p.dest, why(ret));
	dirty_log_stop(&dl);
	free(dirty);
	pthread_mutex_lock(&m->lock);
	if (m->sock >= 0)
		close(m->sock);
	m->sock = -1;
	m->progress.active = false;
	m->running = false;
	pthread_mutex_unlock(&m->lock);
	close(m->reply_fd);
	return NULL;
}

int migrate_start(struct vm *vm, const struct migrate_params *p, int reply_fd)
{
	struct migration *m = vm->migration;
	int ret;

	if (!m) {
		m = calloc(1, sizeof(*m));
		if (!m)
			return -ENOMEM;
		pthread_mutex_init(&m->lock, NULL);
		m->joined = true;
		vm->migration = m;
	}
	pthread_mutex_lock(&m->lock);
	if (m->running) {
		pthread_mutex_unlock(&m->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&m->lock);
	if (!m->joined)
		pthread_join(m->thread, NULL);
	m->vm = vm;
	m->p = *p;
	m->reply_fd = reply_fd;
	m->sock = -1;
	m->running = true;
	m->joined = false;
	ret = pthread_create(&m->thread, NULL, migrate_thread, m);
	if (ret) {
		m->running = false;
		m->joined = true;
		return -ret;
	}
	return 0;
}

void migrate_get_progress(struct vm *vm, struct migrate_progress *out)
{
	struct migration *m = vm->migration;

	*out = (struct migrate_progress){0};
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	*out = m->progress;
	pthread_mutex_unlock(&m->lock);
}

void migrate_join(struct vm *vm)
{
	struct migration *m = vm->migration;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	if (m->running && m->sock >= 0)
		shutdown(m->sock, SHUT_RDWR); /* the VM is going: do not wait out the timeouts */
	pthread_mutex_unlock(&m->lock);
	if (!m->joined)
		pthread_join(m->thread, NULL);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->migration = NULL;
}

/* ---- destination ---- */

int migrate_receive(struct vm_options *opts, struct vm *vm)
{
	char err[512], ack = MIGRATE_ACK_FAILED;
	int lfd, fd, ret;

	lfd = tcp_listen(opts->incoming);
	if (lfd < 0) {
		if (lfd != -EINVAL)
			pr_err("--incoming %s: %s", opts->incoming, strerror(-lfd));
		return 2;
	}
	pr_info("waiting for a migration on %s", opts->incoming);
	fd = tcp_accept(lfd);
	close(lfd);
	if (fd < 0) {
		pr_err("--incoming %s: accept: %s", opts->incoming, strerror(-fd));
		return 1;
	}
	tcp_set_timeouts(fd, RECV_TIMEOUT_MS, SEND_TIMEOUT_MS);
	if (vm_stream_recv_config(fd, opts, NULL, err, sizeof(err))) {
		pr_err("incoming migration: %s", err);
		goto refuse;
	}
	if (vm_create(vm, opts)) {
		pr_err("incoming migration: cannot build the VM");
		goto refuse;
	}
	ret = vm_stream_recv_state(fd, vm, KVM_STATE_CLOCK_ELAPSED, true, NULL);
	if (ret) {
		pr_err("incoming migration failed (%s); nothing was run",
		       ret == -EAGAIN ? "the source stopped sending" : strerror(-ret));
		vm_destroy(vm);
		goto refuse;
	}
	ack = MIGRATE_ACK_STARTED;
	if (send(fd, &ack, 1, MSG_NOSIGNAL) != 1) {
		/* The source did not hear us: it resumes the guest itself.  Never run two. */
		pr_err("incoming migration: the source went away before the hand-over");
		vm_destroy(vm);
		close(fd);
		return 1;
	}
	ret = recv_ack(fd, MIGRATE_ACK_GO);
	close(fd);
	if (ret) {
		/*
		 * Without "go" the source may still run the guest, or may have
		 * stopped it and lost the connection: running here could make
		 * two.  The source's log says which.
		 */
		pr_err("incoming migration: no go-ahead from the source (%s); not running the "
		       "guest here (the source keeps it if it never sent the go-ahead)",
		       why(ret));
		vm_destroy(vm);
		return 1;
	}
	for (unsigned i = 0; i < vm->nr_nets; i++)
		virtio_net_announce(vm->nets[i]);
	pr_info("incoming migration complete: running");
	return 0;
refuse:
	if (send(fd, &ack, 1, MSG_NOSIGNAL) < 0) {
	}
	close(fd);
	return 1;
}
