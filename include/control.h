/* SPDX-License-Identifier: MIT */
/*
 * The control socket (`vmm run --control PATH`) and its client (`vmm ctl
 * PATH COMMAND [ARGS]`).
 *
 * Wire: the client connects, sends its arguments each terminated by a NUL
 * and one more NUL after the last, and reads until EOF.  The server
 * answers with text lines; the last is `ok` or `error: <why>`.  One
 * command per connection; commands run on the event-loop thread, so they
 * see the VM's devices at rest.  The socket is created mode 0600.
 *
 * Commands: status; snapshot FILE [--stop]; quit.
 */
#ifndef VMM_CONTROL_H
#define VMM_CONTROL_H

#include <stdint.h>

#define CONTROL_MAX_REQUEST 8192
#define CONTROL_MAX_ARGS    16

struct vm;

struct control {
	struct vm *vm;
	int listen_fd;
	char path[108];
	uint64_t start_ns; /* CLOCK_MONOTONIC at open: status shows the uptime */
};

/* Listen on path (a stale socket there is replaced) and serve it on vm's loop.  0 or -errno. */
int control_open(struct control *c, struct vm *vm, const char *path);

/* One answer line to a ctl client (a newline is added; a client gone is ignored).  Any thread. */
void control_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stop serving, unlink the socket.  Safe on a control that never opened. */
void control_close(struct control *c);

/*
 * The client: run one command on the socket at path, print the answer
 * (error lines on stderr).  Returns the exit status: 0 ok, 1 the command
 * failed, 2 no such socket / bad usage.
 */
int control_client(const char *path, int argc, char **argv);

#endif
