/* SPDX-License-Identifier: MIT */
/*
 * The host side of the serial console: stdin feeds the guest's UART, guest
 * output goes to stdout.  A terminal on stdin is put in raw mode (restored
 * by console_restore(), also on fatal signals) and Ctrl-A x stops the VM;
 * Ctrl-A Ctrl-A sends one Ctrl-A.
 */
#ifndef VMM_CONSOLE_H
#define VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A */

struct console {
	int in_fd;
	int out_fd;
	bool in_open; /* stdin still readable (not EOF, pollable) */
	bool is_tty;
	bool raw; /* terminal attributes changed; restore them */
	struct termios saved;
	bool escape; /* last input byte was Ctrl-A */
	uint8_t pending[256];
	size_t pending_off, pending_len;
};

/* Take over in_fd/out_fd; raw mode if in_fd is a terminal.  0 or -errno. */
int console_init(struct console *con, int in_fd, int out_fd);

/* Put the terminal back as it was.  Idempotent. */
void console_restore(struct console *con);

/*
 * Read what in_fd has (non-blocking) into the pending buffer, handling the
 * escape.  Returns >0 bytes pending, 0 nothing, -EPIPE at EOF, and
 * -ECANCELED when the user typed Ctrl-A x.
 */
int console_read_input(struct console *con);

/* Write all of buf to out_fd (retrying short writes); output errors are dropped. */
void console_write(struct console *con, const uint8_t *buf, size_t len);

#endif
