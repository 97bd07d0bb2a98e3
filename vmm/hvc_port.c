// SPDX-License-Identifier: MIT
/* hvc0 on a file or a unix socket: the host end of the virtio-console. */
#include "hvc_port.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "event_loop.h"
#include "log.h"
#include "unix_socket.h"
#include "virtio_console.h"

#define CLIENT_SEND_TIMEOUT_MS 1000

static void on_client(void *opaque, uint32_t events);

/* Write it all, or fail: a short write is retried, an error is returned. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Loop thread.  Takes the lock: the output path may be using the fd. */
static void drop_client(struct hvc_port *p, const char *why)
{
	int fd;

	pthread_mutex_lock(&p->lock);
	fd = p->client_fd;
	p->client_fd = -1;
	pthread_mutex_unlock(&p->lock);
	if (fd < 0)
		return;
	if (p->client_watched)
		event_loop_remove(p->loop, fd);
	p->client_watched = false;
	p->pending_off = p->pending_len = 0;
	close(fd);
	pr_info("hvc socket %s: client %s", p->path, why);
}

static void watch_client(struct hvc_port *p, bool on)
{
	if (p->client_fd < 0 || on == p->client_watched)
		return;
	if (on)
		p->client_watched =
		    event_loop_add(p->loop, p->client_fd, EPOLLIN, on_client, p) == 0;
	else
		p->client_watched = event_loop_remove(p->loop, p->client_fd) != 0;
}

/* Give the guest what it takes of the pending input; stop reading while it is full. */
static void feed_guest(struct hvc_port *p)
{
	while (p->pending_off < p->pending_len && p->dev) {
		size_t n = virtio_console_receive(p->dev, p->pending + p->pending_off,
						  p->pending_len - p->pending_off);
		if (n == 0)
			break;
		p->pending_off += n;
	}
	watch_client(p, p->pending_off >= p->pending_len);
}

static void on_client(void *opaque, uint32_t events)
{
	struct hvc_port *p = opaque;
	ssize_t n;

	(void)events;
	n = read(p->client_fd, p->pending, sizeof(p->pending));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_client(p, n == 0 ? "disconnected" : strerror(errno));
		return;
	}
	p->pending_off = 0;
	p->pending_len = (size_t)n;
	feed_guest(p);
}

static void on_accept(void *opaque, uint32_t events)
{
	struct hvc_port *p = opaque;
	struct timeval tv = {.tv_sec = CLIENT_SEND_TIMEOUT_MS / 1000,
			     .tv_usec = (CLIENT_SEND_TIMEOUT_MS % 1000) * 1000};
	int fd;

	(void)events;
	fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (p->client_fd >= 0) {
		/* One console, one user: a second client is told so by the close. */
		pr_warn("hvc socket %s: a client is already connected; refusing another", p->path);
		close(fd);
		return;
	}
	/* Reads are driven by epoll; writes block at most the timeout (then the client goes). */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&p->lock);
	p->client_fd = fd;
	p->client_failed = write_all(fd, p->backlog, p->backlog_len) != 0;
	p->backlog_len = 0;
	pthread_mutex_unlock(&p->lock);
	p->pending_off = p->pending_len = 0;
	watch_client(p, true);
	pr_info("hvc socket %s: client connected", p->path);
}

static void on_space(void *opaque, uint32_t events)
{
	struct hvc_port *p = opaque;
	uint64_t v;

	(void)events;
	if (read(p->space_fd, &v, sizeof(v)) < 0)
		return;
	if (p->client_fd >= 0)
		feed_guest(p);
}

static int open_socket(struct hvc_port *p, const char *path)
{
	int ret;

	snprintf(p->path, sizeof(p->path), "%s", path);
	p->listen_fd = unix_socket_listen(path);
	if (p->listen_fd < 0) {
		ret = p->listen_fd;
		pr_err("--console hvc,socket=%s: %s", path,
		       ret == -EEXIST ? "exists and is not a socket" : strerror(-ret));
		return ret;
	}
	ret = event_loop_add(p->loop, p->listen_fd, EPOLLIN, on_accept, p);
	if (!ret) {
		p->space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ret = p->space_fd < 0 ? -errno
				      : event_loop_add(p->loop, p->space_fd, EPOLLIN, on_space, p);
	}
	if (ret)
		pr_err("--console hvc,socket=%s: %s", path, strerror(-ret));
	return ret;
}

int hvc_port_open(struct hvc_port *p, enum hvc_backend kind, const char *path,
		  struct event_loop *loop)
{
	*p = (struct hvc_port){.kind = kind,
			       .loop = loop,
			       .file_fd = -1,
			       .listen_fd = -1,
			       .space_fd = -1,
			       .client_fd = -1};
	pthread_mutex_init(&p->lock, NULL);
	if (kind == HVC_SOCKET)
		return open_socket(p, path);
	p->file_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (p->file_fd < 0) {
		int ret = -errno;

		pr_err("--console hvc,path=%s: %s", path, strerror(errno));
		return ret;
	}
	return 0;
}

/* Lock held, no client: keep the newest HVC_PORT_BACKLOG bytes for the next client. */
static void keep_backlog(struct hvc_port *p, const uint8_t *buf, size_t len)
{
	if (len >= HVC_PORT_BACKLOG) {
		memcpy(p->backlog, buf + len - HVC_PORT_BACKLOG, HVC_PORT_BACKLOG);
		p->backlog_len = HVC_PORT_BACKLOG;
		return;
	}
	if (p->backlog_len + len > HVC_PORT_BACKLOG) {
		size_t drop = p->backlog_len + len - HVC_PORT_BACKLOG;

		memmove(p->backlog, p->backlog + drop, p->backlog_len - drop);
		p->backlog_len -= drop;
	}
	memcpy(p->backlog + p->backlog_len, buf, len);
	p->backlog_len += len;
}

void hvc_port_output(struct hvc_port *p, const uint8_t *buf, size_t len)
{
	int ret;

	if (p->kind == HVC_FILE) {
		if (write_all(p->file_fd, buf, len))
			pr_warn("hvc output file: write failed: %s", strerror(errno));
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->client_fd >= 0 && !p->client_failed) {
		ret = write_all(p->client_fd, buf, len);
		if (ret) {
			p->client_failed = true;
			/* Gone or not reading: shut it so the loop sees EOF and drops it. */
			pr_warn("hvc socket %s: client %s; disconnecting it", p->path,
				ret == -EAGAIN ? "stopped reading" : strerror(-ret));
			shutdown(p->client_fd, SHUT_RDWR);
		}
	} else if (p->client_fd < 0) {
		keep_backlog(p, buf, len);
	}
	pthread_mutex_unlock(&p->lock);
}

void hvc_port_rx_space(struct hvc_port *p)
{
	uint64_t one = 1;

	if (p->space_fd >= 0 && write(p->space_fd, &one, sizeof(one)) < 0) {
		/* counter saturated: the loop is woken anyway */
	}
}

void hvc_port_close(struct hvc_port *p)
{
	if (p->loop == NULL)
		return;
	drop_client(p, "closed");
	if (p->listen_fd >= 0) {
		event_loop_remove(p->loop, p->listen_fd);
		close(p->listen_fd);
		unlink(p->path);
	}
	if (p->space_fd >= 0) {
		event_loop_remove(p->loop, p->space_fd);
		close(p->space_fd);
	}
	if (p->file_fd >= 0)
		close(p->file_fd);
	pthread_mutex_destroy(&p->lock);
	*p = (struct hvc_port){.file_fd = -1, .listen_fd = -1, .space_fd = -1, .client_fd = -1};
}
