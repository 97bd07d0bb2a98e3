// SPDX-License-Identifier: MIT
/* Console: raw mode on a terminal, the Ctrl-A escape, EOF, and the event loop that feeds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pty.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "console.h"
#include "event_loop.h"

static void test_pipe_input_passes_escape_through(void **state)
{
	struct console con;
	int fds[2];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	console_init(&con, fds[0], STDOUT_FILENO);
	assert_false(con.is_tty);
	assert_int_equal(console_read_input(&con), 0); /* nothing yet, and no blocking */
	assert_int_equal(write(fds[1], "a\x01x", 3), 3);
	/* Not a terminal: Ctrl-A is data, not an escape. */
	assert_int_equal(console_read_input(&con), 3);
	assert_memory_equal(con.pending, "a\x01x", 3);
	con.pending_off = con.pending_len;
	close(fds[1]);
	assert_int_equal(console_read_input(&con), -EPIPE);
	close(fds[0]);
}

static void test_tty_raw_and_escape(void **state)
{
	struct console con;
	struct termios t;
	int master, slave;

	(void)state;
	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	console_init(&con, slave, STDOUT_FILENO);
	assert_true(con.is_tty);
	assert_true(con.raw);
	tcgetattr(slave, &t);
	assert_false(t.c_lflag & ICANON);
	assert_false(t.c_lflag & ECHO);
	/* Ctrl-A Ctrl-A sends one Ctrl-A; other escapes are swallowed. */
	assert_int_equal(write(master, "q\x01\x01z\x01y", 6), 6);
	usleep(20000);
	assert_int_equal(console_read_input(&con), 3);
	assert_memory_equal(con.pending, "q\x01z", 3);
	con.pending_off = con.pending_len;
	assert_int_equal(write(master, "\x01x", 2), 2);
	usleep(20000);
	assert_int_equal(console_read_input(&con), -ECANCELED);
	console_restore(&con);
	tcgetattr(slave, &t);
	assert_true(t.c_lflag & ICANON);
	console_restore(&con); /* idempotent */
	close(master);
	close(slave);
}

struct counter {
	struct event_loop *loop;
	int fd;
	int calls;
};

static void on_readable(void *opaque, uint32_t events)
{
	struct counter *c = opaque;
	char buf[16];

	assert_true(events & EPOLLIN);
	assert_true(read(c->fd, buf, sizeof(buf)) > 0);
	/* Removing oneself from inside the callback is allowed. */
	if (++c->calls == 2)
		assert_int_equal(event_loop_remove(c->loop, c->fd), 0);
	event_loop_stop(c->loop);
}

static void test_event_loop(void **state)
{
	struct event_loop loop;
	struct counter c = {.loop = &loop};
	int fds[2];

	(void)state;
	assert_int_equal(event_loop_init(&loop), 0);
	assert_int_equal(pipe(fds), 0);
	c.fd = fds[0];
	assert_int_equal(event_loop_add(&loop, fds[0], EPOLLIN, on_readable, &c), 0);
	assert_int_equal(write(fds[1], "1", 1), 1);
	assert_int_equal(event_loop_run(&loop), 0);
	assert_int_equal(c.calls, 1);
	loop.stop = false;
	assert_int_equal(write(fds[1], "2", 1), 1);
	assert_int_equal(event_loop_run(&loop), 0);
	assert_int_equal(c.calls, 2);
	assert_int_equal(event_loop_remove(&loop, fds[0]), -ENOENT);
	event_loop_destroy(&loop);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pipe_input_passes_escape_through),
	    cmocka_unit_test(test_tty_raw_and_escape),
	    cmocka_unit_test(test_event_loop),
	};
	return cmocka_run_group_tests_name("console", tests, NULL, NULL);
}
