/* SPDX-License-Identifier: MIT */
/*
 * Unix stream sockets the VMM listens on (control socket, hvc0 socket) and
 * connects to (vmm ctl).
 */
#ifndef VMM_UNIX_SOCKET_H
#define VMM_UNIX_SOCKET_H

/*
 * Bind and listen on path (non-blocking, close-on-exec, mode 0600).  A
 * socket left at path by an earlier run is replaced; any other kind of
 * file there is -EEXIST.  Returns the fd, or -ENAMETOOLONG / -EEXIST /
 * -errno.
 */
int unix_socket_listen(const char *path);

/* Connect to path (blocking).  Returns the fd or -errno. */
int unix_socket_connect(const char *path);

#endif
