// SPDX-License-Identifier: MIT
/*
 * echo: reads lines from COM1 (polled) and prints each back as
 * "echo: <line>".  Proves console input reaches the guest.  Keys: lines=N
 * (power off after N lines, default 1).
 */
#include "kit.h"

#define COM1     0x3f8
#define LSR      5
#define LSR_DR   0x01
#define LINE_MAX 256

static char read_char(void)
{
	while (!(inb(COM1 + LSR) & LSR_DR))
		cpu_relax();
	return (char)inb(COM1);
}

int main(const char *cmdline)
{
	uint64_t lines = cmdline_get_u64("lines", 1), done;
	char line[LINE_MAX];

	(void)cmdline;
	printf("echo: ready\n");
	for (done = 0; done < lines; done++) {
		size_t n = 0;
		char c;

		while ((c = read_char()) != '\n' && c != '\r')
			if (n < sizeof(line) - 1)
				line[n++] = c;
		line[n] = '\0';
		printf("echo: %s\n", line);
	}
	return KIT_EXIT_OK;
}
