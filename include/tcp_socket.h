/* SPDX-License-Identifier: MIT */
/*
 * TCP for migration and replication streams: HOST:PORT parsing, listening,
 * connecting with a timeout, and send/receive timeouts so a dead or stuck
 * peer turns into an error instead of a hang.
 */
#ifndef VMM_TCP_SOCKET_H
#define VMM_TCP_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Split "host:port", "[v6]:port" or ":port" (any address) into host (empty
 * for any) and port.  0 or -EINVAL.
 */
int tcp_parse_addr(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/* Listen on addr (SO_REUSEADDR).  The fd, or -errno / -EINVAL (bad address, printed). */
int tcp_listen(const char *addr);

/* Accept one connection (blocking), with TCP_NODELAY.  The fd or -errno. */
int tcp_accept(int listen_fd);

/* Connect to addr within timeout_ms, TCP_NODELAY.  The fd, or -errno / -ETIMEDOUT / -EINVAL. */
int tcp_connect(const char *addr, int timeout_ms);

/* Reads and writes on fd fail with EAGAIN after ms without progress (0: never). */
int tcp_set_timeouts(int fd, int recv_ms, int send_ms);

/*
 * on: closing fd (also by the process dying) resets the connection and drops
 * whatever it has not yet sent (SO_LINGER 0), instead of sending that after
 * the process is gone; data the peer already received stays readable there.
 * off: the usual close, which sends what is queued.  0 or -errno.
 */
int tcp_abort_on_close(int fd, bool on);

#endif
