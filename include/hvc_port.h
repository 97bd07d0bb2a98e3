/* SPDX-License-Identifier: MIT */
/*
 * Where the guest's hvc0 (virtio-console) goes when it is not on stdio:
 * `--console hvc,path=FILE` appends its output to a file (no input), and
 * `--console hvc,socket=PATH` listens on a unix socket: one client at a
 * time gets the output and its input goes to the guest.  While no client
 * is connected the newest HVC_PORT_BACKLOG bytes of output are kept and
 * handed to the next client (so it sees the boot messages); older output
 * is dropped, as on a serial line nobody listens to.  A client that stops
 * reading for a second is disconnected so it cannot stall the VM.
 *
 * Threads: hvc_port_output() runs on whichever thread the device calls its
 * output hook from (event loop or vCPU); everything else on the loop
 * thread, except hvc_port_rx_space(), which any thread may call.
 */
#ifndef VMM_HVC_PORT_H
#define VMM_HVC_PORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"

#define HVC_PORT_BACKLOG 16384 /* output kept for a socket client that is not connected yet */

struct event_loop;
struct virtio_console;

struct hvc_port {
	enum hvc_backend kind; /* HVC_FILE or HVC_SOCKET */
	struct event_loop *loop;
	struct virtio_console *dev; /* where client input goes; set by the VM after creating it */
	int file_fd;		    /* HVC_FILE */
	int listen_fd;		    /* HVC_SOCKET */
	int space_fd;		    /* eventfd: the guest posted receive buffers */
	char path[108];		    /* the socket's path, unlinked at close */
	pthread_mutex_t lock;	    /* guards client_fd against the output path */
	int client_fd;		    /* -1: nobody connected */
	bool client_failed;	    /* a write to it failed: no more output, the loop drops it */
	bool client_watched;	    /* client_fd is in the epoll set (there is room for input) */
	uint8_t pending[256];	    /* client input the guest has not taken yet */
	size_t pending_off, pending_len;
	uint8_t backlog[HVC_PORT_BACKLOG]; /* newest output while nobody is connected */
	size_t backlog_len;
};

/*
 * Open the file (created, appended to) or bind and listen on the socket
 * (a stale socket file at path is replaced) and watch it on loop.  0 or
 * -errno with one line printed naming the path.
 */
int hvc_port_open(struct hvc_port *p, enum hvc_backend kind, const char *path,
		  struct event_loop *loop);

/* Guest output: to the file or the connected client; dropped otherwise. */
void hvc_port_output(struct hvc_port *p, const uint8_t *buf, size_t len);

/* The device has receive buffers again (its rx_space hook).  Any thread. */
void hvc_port_rx_space(struct hvc_port *p);

/* Close everything, unlink the socket.  Safe on a port that failed to open. */
void hvc_port_close(struct hvc_port *p);

#endif
