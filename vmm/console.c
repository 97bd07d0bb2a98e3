// SPDX-License-Identifier: MIT
/* Host terminal: raw mode, Ctrl-A escape, stdout writes. */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

int console_init(struct console *con, int in_fd, int out_fd)
{
	struct termios raw;

	memset(con, 0, sizeof(*con));
	con->in_fd = in_fd;
	con->out_fd = out_fd;
	con->in_open = in_fd >= 0;
	con->is_tty = in_fd >= 0 && isatty(in_fd);
	if (con->is_tty && tcgetattr(in_fd, &con->saved) == 0) {
		raw = con->saved;
		cfmakeraw(&raw);
		/* Keep output post-processing off as well: the guest sends its own \r\n. */
		if (tcsetattr(in_fd, TCSANOW, &raw) == 0)
			con->raw = true;
	}
	return 0;
}

void console_restore(struct console *con)
{
	if (con->raw) {
		tcsetattr(con->in_fd, TCSANOW, &con->saved);
		con->raw = false;
	}
}

int console_read_input(struct console *con)
{
	uint8_t buf[sizeof(con->pending)];
	ssize_t n;
	ssize_t i;

	if (con->pending_off < con->pending_len)
		return (int)(con->pending_len - con->pending_off);
	con->pending_off = con->pending_len = 0;
	/* Don't block: the loop may call us on a spurious wakeup. */
	struct pollfd pfd = {.fd = con->in_fd, .events = POLLIN};
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	n = read(con->in_fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -EPIPE;
	if (n == 0)
		return -EPIPE;
	for (i = 0; i < n; i++) {
		uint8_t c = buf[i];

		if (con->is_tty && con->escape) {
			con->escape = false;
			if (c == 'x' || c == 'X')
				return -ECANCELED;
			if (c != CONSOLE_ESCAPE)
				continue; /* unknown escape: swallow it */
		} else if (con->is_tty && c == CONSOLE_ESCAPE) {
			con->escape = true;
			continue;
		}
		con->pending[con->pending_len++] = c;
	}
	return (int)con->pending_len;
}

void console_write(struct console *con, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(con->out_fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = {.fd = con->out_fd, .events = POLLOUT};

				poll(&pfd, 1, 100);
				continue;
			}
			return; /* stdout gone: the guest keeps running */
		}
		buf += n;
		len -= (size_t)n;
	}
}
