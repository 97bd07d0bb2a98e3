// SPDX-License-Identifier: MIT
/* The control socket: one command per connection, served on the event loop; and its client. */
#include "control.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mono_time.h"
#include "migrate.h"
#include "replicate.h"
#include "unix_socket.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "vm.h"
#include "vm_stream.h"

#define REQUEST_TIMEOUT_MS 2000

void control_reply(int fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* The client may be gone; the command's effect stands either way. */
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0) {
	}
}

static void cmd_status(struct control *c, int fd)
{
	struct vm *vm = c->vm;
	bool paused;

	pthread_mutex_lock(&vm->lock);
	paused = vm->pause_requested;
	pthread_mutex_unlock(&vm->lock);
	struct repl_status rs;
	struct standby_status ss;

	replicate_get_status(vm, &rs);
	standby_get_status(vm, &ss);
	if (vm->standby && !ss.active) {
		control_reply(fd, "role: standby");
		control_reply(
		    fd,
		    "standby: %s, checkpoint %llu committed, %llu MiB received, primary heard "
		    "%llu ms ago",
		    ss.phase, (unsigned long long)ss.committed,
		    (unsigned long long)(ss.bytes >> 20), (unsigned long long)ss.since_rx_ms);
	} else {
		control_reply(fd, "role: primary%s", vm->standby ? " (took over as standby)" : "");
		control_reply(fd, "state: %s", paused ? "paused" : "running");
		if (!vm->repl)
			control_reply(fd, "protection: unprotected (no standby)");
		else if (rs.protected_)
			control_reply(fd, "protection: protected by %s", rs.peer);
		else
			control_reply(fd, "protection: unprotected (%s)",
				      rs.note[0] ? rs.note : "starting");
		if (vm->repl)
			control_reply(
			    fd,
			    "replication: epoch %llu, acknowledged %llu, lag %llu epochs, %llu MiB "
			    "sent, pause p50 %llu us p99 %llu us max %llu us, last epoch %llu "
			    "pages (%llu copied ahead), output held %llu bytes (longest %llu us)",
			    (unsigned long long)rs.epoch, (unsigned long long)rs.acked,
			    (unsigned long long)(rs.epoch - rs.acked),
			    (unsigned long long)(rs.bytes >> 20),
			    (unsigned long long)rs.pause_p50_us,
			    (unsigned long long)rs.pause_p99_us,
			    (unsigned long long)rs.pause_max_us, (unsigned long long)rs.last_pages,
			    (unsigned long long)rs.last_ahead, (unsigned long long)rs.held_bytes,
			    (unsigned long long)rs.hold_max_us);
		control_reply(fd,
			      "replication-pause-mean-us: stop %llu, dirty log %llu, copy %llu, "
			      "state %llu",
			      (unsigned long long)rs.pause_part_us[0],
			      (unsigned long long)rs.pause_part_us[1],
			      (unsigned long long)rs.pause_part_us[2],
			      (unsigned long long)rs.pause_part_us[3]);
	}
	control_reply(fd, "uptime-s: %.3f", (double)(mono_ns() - c->start_ns) / 1e9);
	control_reply(fd, "vcpus: %u", vm->ncpus);
	control_reply(fd, "memory-mib: %llu", (unsigned long long)(vm->mem.ram_size >> 20));
	struct migrate_progress mp;
	migrate_get_progress(vm, &mp);
	if (mp.active)
		control_reply(
		    fd,
		    "migration: pass %u, %llu pages dirty, %.1f MiB/s, expected downtime %llu ms, "
		    "%llu MiB sent",
		    mp.pass, (unsigned long long)mp.remaining_pages, (double)mp.rate / (1 << 20),
		    (unsigned long long)mp.expected_downtime_ms,
		    (unsigned long long)(mp.bytes >> 20));
	for (unsigned i = 0; i < vm->nr_blks; i++) {
		struct virtio_blk_stats s;

		virtio_blk_get_stats(vm->blks[i], &s);
		control_reply(fd, "disk%u: %s reads=%llu writes=%llu flushes=%llu errors=%llu", i,
			      vm->opts->disks[i].path, (unsigned long long)s.reads,
			      (unsigned long long)s.writes, (unsigned long long)s.flushes,
			      (unsigned long long)s.errors);
	}
	for (unsigned i = 0; i < vm->nr_nets; i++) {
		struct virtio_net_stats s;

		virtio_net_get_stats(vm->nets[i], &s);
		control_reply(fd, "net%u: %s rx-packets=%llu tx-packets=%llu rx-dropped=%llu", i,
			      vm->opts->nets[i].tap, (unsigned long long)s.rx_packets,
			      (unsigned long long)s.tx_packets, (unsigned long long)s.rx_dropped);
	}
	control_reply(fd, "ok");
}

static void cmd_replicate_to(struct control *c, int fd, int argc, char **argv)
{
	struct standby_status ss;
	struct repl_params p;
	int ret;

	standby_get_status(c->vm, &ss);
	if (c->vm->standby && !ss.active)
		return control_reply(fd, "error: a standby protects nothing until it takes over");
	replicate_params_from_options(c->vm->opts, &p);
	snprintf(p.peer, sizeof(p.peer), "%s", argv[1]);
	for (int i = 2; i < argc; i++) {
		unsigned v;
		char *end;

		if (i + 1 < argc &&
		    (!strcmp(argv[i], "--epoch-ms") || !strcmp(argv[i], "--failover-timeout-ms"))) {
			v = (unsigned)strtoul(argv[i + 1], &end, 10);
			if (*end || v == 0)
				return control_reply(fd, "error: %s: bad number", argv[i]);
			if (argv[i][2] == 'e')
				p.epoch_ms = v;
			else
				p.failover_timeout_ms = v;
			i++;
		} else {
			return control_reply(fd,
					     "error: usage: replicate-to HOST:PORT [--epoch-ms N] "
					     "[--failover-timeout-ms N]");
		}
	}
	ret = replicate_start(c->vm, &p);
	if (ret)
		return control_reply(fd, "error: %s",
				     ret == -EBUSY ? "already replicating" : strerror(-ret));
	control_reply(fd,
		      "replicating to %s every %u ms (protected once the first checkpoint commits)",
		      p.peer, p.epoch_ms);
	control_reply(fd, "ok");
}

/* Hands fd to the migration thread on success (returns true: not the caller's to close). */
static bool cmd_migrate(struct control *c, int fd, int argc, char **argv)
{
	struct migrate_params p;
	char err[512];
	int ret;

	if (migrate_parse(argc - 1, argv + 1, &p, err, sizeof(err))) {
		control_reply(fd, "error: %s", err);
		return false;
	}
	/* Progress lines may come seconds apart: no send timeout on this one. */
	struct timeval none = {0};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
	ret = migrate_start(c->vm, &p, fd);
	if (ret) {
		control_reply(fd, "error: %s",
			      ret == -EBUSY ? "a migration is already running" : strerror(-ret));
		return false;
	}
	return true;
}

static void cmd_snapshot(struct control *c, int fd, int argc, char **argv)
{
	struct stream_stats st = {0};
	bool stop = false;
	const char *path = NULL;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--stop"))
			stop = true;
		else if (!path && argv[i][0])
			path = argv[i];
		else
			return control_reply(fd, "error: usage: snapshot FILE [--stop]");
	}
	if (!path)
		return control_reply(fd, "error: usage: snapshot FILE [--stop]");
	if (vm_snapshot(c->vm, path, stop, &st, err, sizeof(err)))
		return control_reply(fd, "error: %s", err);
	control_reply(fd,
		      "snapshot: %s bytes=%llu pages=%llu zero-pages-skipped=%llu paused-ms=%.1f",
		      path, (unsigned long long)st.bytes, (unsigned long long)st.pages,
		      (unsigned long long)st.zero_pages, (double)st.pause_ns / 1e6);
	if (stop) {
		control_reply(fd, "stopped: the VM ends now");
		pr_info("snapshot to %s taken; stopping as asked", path);
		vm_request_stop(c->vm, VM_STOP_SIGNAL, 0);
	}
	control_reply(fd, "ok");
}

/* Split a request (NUL-terminated arguments, then an empty one) into argv. */
static int parse_request(char *buf, size_t len, char **argv)
{
	int argc = 0;
	size_t i = 0;

	while (i < len) {
		size_t n = strnlen(buf + i, len - i);

		if (i + n == len)
			return -EINVAL; /* unterminated */
		if (n == 0)
			return argc > 0 ? argc : -EINVAL; /* the closing empty argument */
		if (argc == CONTROL_MAX_ARGS)
			return -E2BIG;
		argv[argc++] = buf + i;
		i += n + 1;
	}
	return -EINVAL;
}

/* Read until the request's closing NUL NUL arrives (or the timeout). */
static ssize_t read_request(int fd, char *buf, size_t size)
{
	size_t len = 0;

	while (len < size) {
		ssize_t n = recv(fd, buf + len, size - len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		len += (size_t)n;
		if (len >= 2 && buf[len - 1] == '\0' && buf[len - 2] == '\0')
			return (ssize_t)len;
		if (len == 1 && buf[0] == '\0')
			return (ssize_t)len;
	}
	return -E2BIG;
}

static void on_connection(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	struct timeval tv = {.tv_sec = REQUEST_TIMEOUT_MS / 1000,
			     .tv_usec = (REQUEST_TIMEOUT_MS % 1000) * 1000};
	char buf[CONTROL_MAX_REQUEST], *argv[CONTROL_MAX_ARGS];
	ssize_t len;
	int fd, argc;

	(void)events;
	fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* A client that connects and says nothing must not hold the loop for long. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	len = read_request(fd, buf, sizeof(buf));
	argc = len < 0 ? (int)len : parse_request(buf, (size_t)len, argv);
	if (argc < 0) {
		control_reply(fd, "error: malformed request");
	} else if (!strcmp(argv[0], "status") && argc == 1) {
		cmd_status(c, fd);
	} else if (!strcmp(argv[0], "snapshot")) {
		cmd_snapshot(c, fd, argc, argv);
	} else if (!strcmp(argv[0], "migrate")) {
		if (cmd_migrate(c, fd, argc, argv))
			return; /* the migration thread answers and closes */
	} else if (!strcmp(argv[0], "failover") && argc == 1) {
		if (!c->vm->standby) {
			control_reply(fd, "error: not a standby");
		} else {
			standby_request_failover(c->vm);
			control_reply(fd, "ok");
		}
	} else if (!strcmp(argv[0], "replicate-to") && argc >= 2) {
		cmd_replicate_to(c, fd, argc, argv);
	} else if (!strcmp(argv[0], "quit") && argc == 1) {
		control_reply(fd, "ok");
		vm_request_stop(c->vm, VM_STOP_SIGNAL, 0);
	} else {
		control_reply(
		    fd,
		    "error: unknown command '%s' (status, snapshot, migrate, replicate-to, "
		    "failover, quit)",
		    argv[0]);
	}
	close(fd);
}

int control_open(struct control *c, struct vm *vm, const char *path)
{
	int ret;

	*c = (struct control){.vm = vm, .listen_fd = -1, .start_ns = mono_ns()};
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->listen_fd = unix_socket_listen(path);
	if (c->listen_fd < 0) {
		ret = c->listen_fd;
		pr_err("--control %s: %s", path,
		       ret == -EEXIST ? "exists and is not a socket" : strerror(-ret));
		return ret;
	}
	ret = event_loop_add(&vm->loop, c->listen_fd, EPOLLIN, on_connection, c);
	if (ret)
		pr_err("--control %s: %s", path, strerror(-ret));
	return ret;
}

void control_close(struct control *c)
{
	if (!c->vm || c->listen_fd < 0)
		return;
	event_loop_remove(&c->vm->loop, c->listen_fd);
	close(c->listen_fd);
	unlink(c->path);
	c->listen_fd = -1;
}

/* ---- the client ---- */

int control_client(const char *path, int argc, char **argv)
{
	char req[CONTROL_MAX_REQUEST], abs[PATH_MAX + 2], resp[4096], *line;
	bool answered = false;
	size_t len = 0, have = 0;
	int fd, status = 1;

	if (argc < 1) {
		pr_err("ctl: no command (status, snapshot FILE [--stop], quit)");
		return 2;
	}
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		/* The VMM resolves paths in its own directory: send the client's meaning. */
		if (i == 1 && !strcmp(argv[0], "snapshot") && a[0] != '/' && a[0] != '-') {
			char cwd[PATH_MAX];

			if (!getcwd(cwd, sizeof(cwd)) ||
			    snprintf(abs, sizeof(abs), "%s/%s", cwd, a) >= (int)sizeof(abs)) {
				pr_err("ctl: cannot make %s absolute", a);
				return 2;
			}
			a = abs;
		}
		size_t n = strlen(a) + 1;

		if (len + n + 1 > sizeof(req)) {
			pr_err("ctl: command too long");
			return 2;
		}
		memcpy(req + len, a, n);
		len += n;
	}
	req[len++] = '\0';
	fd = unix_socket_connect(path);
	if (fd < 0) {
		pr_err("ctl: cannot connect to %s: %s (is the VM running with --control?)", path,
		       strerror(-fd));
		return 2;
	}
	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		pr_err("ctl: %s: %s", path, strerror(errno));
		close(fd);
		return 2;
	}
	/* Print whole lines as they come (a long command reports progress). */
	for (;;) {
		ssize_t n = read(fd, resp + have, sizeof(resp) - 1 - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		resp[have] = '\0';
		char *start = resp;
		while ((line = strchr(start, '\n'))) {
			*line = '\0';
			if (!strncmp(start, "error: ", 7)) {
				fprintf(stderr, "vmm: %s\n", start + 7);
			} else if (strcmp(start, "ok")) {
				printf("%s\n", start);
			}
			answered = true;
			status = !strcmp(start, "ok") ? 0 : 1;
			start = line + 1;
		}
		have = strlen(start);
		memmove(resp, start, have);
		if (have == sizeof(resp) - 1)
			have = 0; /* an over-long line: drop it */
	}
	close(fd);
	fflush(stdout);
	if (!answered) {
		pr_err("ctl: %s closed without an answer", path);
		return 1;
	}
	return status;
}
