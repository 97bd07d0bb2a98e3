/* SPDX-License-Identifier: MIT */
/*
 * Capture what the code under test prints on stderr, to check the "one
 * clear line per bad input" rule.  Header-only so each test binary gets its
 * own static copy.
 */
#ifndef TEST_CAPTURE_H
#define TEST_CAPTURE_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct capture {
	int saved_fd;
	FILE *tmp;
	char text[4096];
};

static inline void capture_begin(struct capture *c)
{
	fflush(stderr);
	c->tmp = tmpfile();
	c->saved_fd = dup(2);
	if (c->tmp && c->saved_fd >= 0)
		dup2(fileno(c->tmp), 2);
}

/* Stop capturing; returns the number of lines printed (text in c->text). */
static inline int capture_end(struct capture *c)
{
	size_t n = 0;
	int lines = 0;
	char *p;

	fflush(stderr);
	if (c->saved_fd >= 0) {
		dup2(c->saved_fd, 2);
		close(c->saved_fd);
	}
	if (c->tmp) {
		rewind(c->tmp);
		n = fread(c->text, 1, sizeof(c->text) - 1, c->tmp);
		fclose(c->tmp);
	}
	c->text[n] = '\0';
	for (p = c->text; *p; p++)
		lines += *p == '\n';
	/* Echo it, so a failing test shows what was said. */
	fputs(c->text, stderr);
	return lines;
}

#endif
