// SPDX-License-Identifier: MIT
/* TCP sockets for the state streams. */
#include "tcp_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

int tcp_parse_addr(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = s;
	size_t hl;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl >= hostlen || !colon[1] || strlen(colon + 1) >= portlen)
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int resolve(const char *addr, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
	char host[256], port[16];
	int ret;

	if (tcp_parse_addr(addr, host, sizeof(host), port, sizeof(port))) {
		pr_err("'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (ret) {
		pr_err("%s: %s", addr, gai_strerror(ret));
		return -EINVAL;
	}
	return 0;
}

int tcp_listen(const char *addr)
{
	struct addrinfo *res, *ai;
	int fd = -1, ret = -EADDRNOTAVAIL, one = 1;

	if (resolve(addr, true, &res))
		return -EINVAL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0)
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : ret;
}

/*
 * The streams end their exchanges with one-byte answers and small sections:
 * under Nagle a second small write waits for the peer's delayed ACK (40 ms
 * on Linux), longer than the pause it ends.
 */
static void no_delay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int tcp_accept(int listen_fd)
{
	int fd;

	do
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	no_delay(fd);
	return fd;
}

/* Connect one address without blocking past timeout_ms. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	struct pollfd pfd;
	int fd, err = 0, ret;
	socklen_t len = sizeof(err);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			ret = -errno;
			close(fd);
			return ret;
		}
		pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
		do
			ret = poll(&pfd, 1, timeout_ms);
		while (ret < 0 && errno == EINTR);
		if (ret == 0) {
			close(fd);
			return -ETIMEDOUT;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			close(fd);
			return err ? -err : -EIO;
		}
	}
	/* Blocking from here on; timeouts come from tcp_set_timeouts. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	no_delay(fd);
	return fd;
}

int tcp_connect(const char *addr, int timeout_ms)
{
	struct addrinfo *res, *ai;
	int fd = -ECONNREFUSED;

	if (resolve(addr, false, &res))
		return -EINVAL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, timeout_ms);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

int tcp_set_timeouts(int fd, int recv_ms, int send_ms)
{
	struct timeval r = {.tv_sec = recv_ms / 1000, .tv_usec = (recv_ms % 1000) * 1000};
	struct timeval s = {.tv_sec = send_ms / 1000, .tv_usec = (send_ms % 1000) * 1000};

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s)) < 0)
		return -errno;
	return 0;
}

int tcp_abort_on_close(int fd, bool on)
{
	struct linger l = {.l_onoff = on ? 1 : 0, .l_linger = 0};

	return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0 ? -errno : 0;
}
