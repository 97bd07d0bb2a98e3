// SPDX-License-Identifier: MIT
/*
 * COM1 output, polled.  Every port access may be a VM exit (tens of
 * microseconds on a nested host), so with a 16550A FIFO one THRE poll
 * covers 16 bytes.  No divisor setup: emulated UARTs send at any speed and
 * a real one keeps the firmware's setting.
 */
#include "kit.h"

#define COM1	      0x3f8
#define UART_FCR      2 /* write */
#define UART_IIR      2 /* read */
#define UART_LSR      5
#define UART_FCR_INIT 0x07 /* enable FIFOs, clear both */
#define UART_IIR_FIFO 0xc0 /* both bits set: FIFOs enabled */
#define UART_LSR_THRE 0x20
#define FIFO_SIZE     16
/* An absent or wedged UART must not hang the guest. */
#define THRE_SPINS 1000000

static unsigned burst; /* bytes per THRE poll; 0 until probed */

static void probe(void)
{
	outb(COM1 + UART_FCR, UART_FCR_INIT);
	burst = (inb(COM1 + UART_IIR) & UART_IIR_FIFO) == UART_IIR_FIFO ? FIFO_SIZE : 1;
}

void serial_write(const char *buf, size_t len)
{
	if (!burst)
		probe();
	while (len) {
		size_t n = len < burst ? len : burst;
		unsigned spins = 0;

		while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE) && ++spins < THRE_SPINS)
			cpu_relax();
		len -= n;
		while (n--)
			outb(COM1, (uint8_t)*buf++);
	}
}

void serial_puts(const char *s)
{
	serial_write(s, strlen(s));
}
