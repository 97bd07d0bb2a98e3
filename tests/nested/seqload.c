// SPDX-License-Identifier: MIT
/* seqload: the guest workload and the host tools of the nested snapshot and
 * migration tests (test_snapshot.sh, test_migrate.sh, test_failover.sh).
 *
 * seqload run PORT NCLIENTS COUNT INTERVAL_MS FILE [DIR]
 *	(L2) listen on PORT, wait for NCLIENTS connections, then COUNT times,
 *	INTERVAL_MS apart: the line "seq N rt=REALTIME mono=MONOTONIC" appended
 *	to FILE and fsynced, written to DIR/N (if DIR), to /dev/hvc0 and to every
 *	client. Progress and errors as "L2: ..." lines on stdout.
 * seqload client HOST PORT SECONDS
 *	(L1) connect (retrying for SECONDS), print each line received as
 *	"RECEIVED-REALTIME LINE", then "client: eof after N lines" (the guest
 *	closed) or "client: error ...".
 * seqload stamp
 *	(L1) copy stdin to stdout, each line prefixed by "[REALTIME] ".
 * seqload timeserve PORT SECONDS
 *	(L1) answer UDP requests with this host's CLOCK_REALTIME for SECONDS.
 * seqload timesync HOST PORT [set]
 *	(L1) NTP-style: 40 requests, the offset of HOST's clock from ours seen by
 *	the fastest one; "set" steps our clock by it and measures again. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double clk(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t rt_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int die(const char *what)
{
	printf("L2: FAIL %s: %s\n", what, strerror(errno));
	return 1;
}

static int writeall(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int run(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int port, nclients, count, interval, lfd, fd, hvc, one = 1, cl[8], fsync_every;
	const char *dir;

	if (argc < 7)
		return 2;
	port = atoi(argv[2]);
	nclients = atoi(argv[3]);
	count = atoi(argv[4]);
	interval = atoi(argv[5]);
	dir = argc > 7 ? argv[7] : NULL;
	/* SEQLOAD_FSYNC_EVERY=N fsyncs every Nth line (and the last); default every line. */
	fsync_every = getenv("SEQLOAD_FSYNC_EVERY") ? atoi(getenv("SEQLOAD_FSYNC_EVERY")) : 1;
	if (fsync_every < 1 || count % fsync_every)
		fsync_every = 1;
	if (nclients > 8)
		return 2;
	fd = open(argv[6], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		return die(argv[6]);
	hvc = open("/dev/hvc0", O_WRONLY | O_NOCTTY);
	if (hvc < 0)
		return die("/dev/hvc0");
	if (dir && mkdir(dir, 0755) && errno != EEXIST)
		return die(dir);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 8))
		return die("listen");
	printf("L2: listening on %d for %d clients\n", port, nclients);
	fflush(stdout);
	for (int i = 0; i < nclients; i++) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};

		if (poll(&p, 1, 120000) != 1)
			return die("no client within 120 s");
		cl[i] = accept(lfd, NULL, NULL);
		if (cl[i] < 0)
			return die("accept");
		setsockopt(cl[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	printf("L2: %d clients connected, %d lines every %d ms\n", nclients, count, interval);
	fflush(stdout);
	for (int n = 1; n <= count; n++) {
		char line[128], path[256];
		int len = snprintf(line, sizeof(line), "seq %d rt=%.6f mono=%.6f\n", n,
				   clk(CLOCK_REALTIME), clk(CLOCK_MONOTONIC));

		if (writeall(fd, line, (size_t)len) || (n % fsync_every == 0 && fsync(fd)))
			return die("append to the file");
		if (dir) {
			int f;

			snprintf(path, sizeof(path), "%s/%d", dir, n);
			f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (f < 0 || writeall(f, line, (size_t)len) || close(f))
				return die(path);
		}
		if (writeall(hvc, line, (size_t)len))
			return die("write to /dev/hvc0");
		for (int i = 0; i < nclients; i++) {
			if (cl[i] >= 0 && writeall(cl[i], line, (size_t)len)) {
				printf("L2: FAIL client %d: write of seq %d: %s\n", i, n,
				       strerror(errno));
				close(cl[i]);
				cl[i] = -1;
			}
		}
		if (n % 10 == 0) {
			printf("L2: at %s", line);
			fflush(stdout);
		}
		usleep((useconds_t)interval * 1000);
	}
	if (dir) {
		int d = open(dir, O_RDONLY | O_DIRECTORY);

		if (d < 0 || fsync(d) || close(d))
			return die("fsync of the directory");
	}
	for (int i = 0; i < nclients; i++)
		if (cl[i] >= 0)
			close(cl[i]);
	printf("L2: wrote %d lines\n", count);
	return 0;
}

static int client(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	char buf[65536];
	size_t len = 0;
	long lines = 0;
	time_t end;
	int fd;

	if (argc < 5)
		return 2;
	a.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1)
		return 2;
	end = time(NULL) + atoi(argv[4]);
	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		if (time(NULL) >= end) {
			printf("client: error: cannot connect: %s\n", strerror(errno));
			return 1;
		}
		usleep(200000);
	}
	printf("client: connected\n");
	fflush(stdout);
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		double now = clk(CLOCK_REALTIME);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				printf("client: error after %ld lines: %s\n", lines, strerror(errno));
			else
				printf("client: eof after %ld lines%s\n", lines,
				       len ? " (and a partial line)" : "");
			return n < 0;
		}
		len += (size_t)n;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = 0;
			printf("%.6f %s\n", now, buf);
			lines++;
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		fflush(stdout);
		if (len == sizeof(buf)) {
			printf("client: error: line too long\n");
			return 1;
		}
	}
}

static int stamp(void)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin)) {
		printf("[%.6f] %s", clk(CLOCK_REALTIME), line);
		fflush(stdout);
	}
	return 0;
}

static int udp(const char *host, int port, struct sockaddr_in *a)
{
	*a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (host && inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return -1;
	return socket(AF_INET, SOCK_DGRAM, 0);
}

static int timeserve(int argc, char **argv)
{
	struct sockaddr_in a, from;
	struct timeval tv = {.tv_sec = 1};
	time_t end;
	int fd;

	if (argc < 4)
		return 2;
	fd = udp(NULL, atoi(argv[2]), &a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)))
		return perror("timeserve"), 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	end = time(NULL) + atoi(argv[3]);
	while (time(NULL) < end) {
		socklen_t fl = sizeof(from);
		int64_t req;

		if (recvfrom(fd, &req, sizeof(req), 0, (struct sockaddr *)&from, &fl) != sizeof(req))
			continue;
		int64_t reply[2] = {req, rt_ns()};
		sendto(fd, reply, sizeof(reply), 0, (struct sockaddr *)&from, fl);
	}
	return 0;
}

/* Offset (ns) of the server's clock from ours, from the fastest of 40 exchanges. */
static int measure(int fd, struct sockaddr_in *a, int64_t *offset, int64_t *rtt)
{
	int got = 0;

	*rtt = INT64_MAX;
	for (int i = 0; i < 40; i++) {
		int64_t t0 = rt_ns(), reply[2], t1;
		struct pollfd p = {.fd = fd, .events = POLLIN};

		sendto(fd, &t0, sizeof(t0), 0, (struct sockaddr *)a, sizeof(*a));
		while (poll(&p, 1, 500) == 1) {
			if (recv(fd, reply, sizeof(reply), 0) == sizeof(reply) && reply[0] == t0)
				break;
			reply[0] = 0;
		}
		t1 = rt_ns();
		if (reply[0] == t0 && t1 - t0 < *rtt) {
			*rtt = t1 - t0;
			*offset = reply[1] - (t0 + t1) / 2;
			got++;
		}
		usleep(20000);
	}
	return got ? 0 : -1;
}

static int timesync(int argc, char **argv)
{
	struct sockaddr_in a;
	int64_t off, rtt;
	int fd;

	if (argc < 4)
		return 2;
	fd = udp(argv[2], atoi(argv[3]), &a);
	if (fd < 0 || measure(fd, &a, &off, &rtt))
		return printf("timesync: no answer from %s\n", argv[2]), 1;
	printf("timesync: offset %+.3f ms rtt %.3f ms\n", (double)off / 1e6, (double)rtt / 1e6);
	if (argc > 4 && !strcmp(argv[4], "set")) {
		int64_t t = rt_ns() + off;
		struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};

		if (clock_settime(CLOCK_REALTIME, &ts))
			return perror("clock_settime"), 1;
		if (measure(fd, &a, &off, &rtt))
			return printf("timesync: no answer from %s\n", argv[2]), 1;
		printf("timesync: after set: offset %+.3f ms rtt %.3f ms\n", (double)off / 1e6,
		       (double)rtt / 1e6);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "run"))
		rc = run(argc, argv);
	else if (argc > 1 && !strcmp(argv[1], "client"))
		rc = client(argc, argv);
	else if (argc > 1 && !strcmp(argv[1], "stamp"))
		rc = stamp();
	else if (argc > 1 && !strcmp(argv[1], "timeserve"))
		rc = timeserve(argc, argv);
	else if (argc > 1 && !strcmp(argv[1], "timesync"))
		rc = timesync(argc, argv);
	if (rc == 2)
		fprintf(stderr, "usage: see the comment at the top of seqload.c\n");
	return rc;
}
