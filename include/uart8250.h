/* SPDX-License-Identifier: MIT */
/*
 * A 16550A-compatible UART (the PC's COM ports): enough for Linux's 8250
 * driver (autoconfig finds a 16550A, interrupts or polling) and for polled
 * bare-metal output.
 *
 * Transmission is instantaneous: a byte written to THR goes to ops->output
 * and THR/TSR are empty again at once, so LSR.THRE and LSR.TEMT always read
 * 1 and the THRE interrupt re-arms after every write.  Received bytes wait in
 * a 16-byte FIFO, the 16550A's own size: drivers size their trigger levels
 * for it, and a bigger FIFO would not save bytes because the owner never
 * pushes more than fits (it waits for ops->rx_space instead).  With the FIFO
 * off (FCR bit 0 clear) the receiver holds one byte, as on the real chip.
 *
 * The receive interrupt fires as soon as one byte is waiting: below the FCR
 * trigger level IIR reports it as a character timeout, the state a real chip
 * reaches four character times later.  The IRQ line is level-driven and
 * equals "IIR shows an enabled interrupt, MCR.OUT2 is set and loopback is
 * off": on a PC OUT2 gates the UART's IRQ onto the bus, and in loopback the
 * chip forces its outputs inactive.  Loopback (MCR bit 4) feeds THR into the
 * receiver and MCR's DTR/RTS/OUT1/OUT2 into MSR's DSR/CTS/RI/DCD; the host
 * side is disconnected meanwhile (uart8250_receive takes nothing).
 *
 * Threads: vCPUs call the register handler, the event loop calls
 * uart8250_receive, concurrently.  The device locks its own state; the IRQ
 * line is driven with that lock held; ops->output and ops->rx_space are
 * called with no lock held, so they may block or call uart8250_receive.
 * Output order is the order of the THR writes even across vCPUs, and a
 * vCPU whose THR write finds the transmit queue full waits (back-pressure,
 * never a dropped byte).  Once every vCPU has returned from its bus
 * handlers (e.g. the VM is paused), every byte written to THR has been
 * passed to ops->output.
 */
#ifndef VMM_UART8250_H
#define VMM_UART8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "irq.h"

#define UART8250_FIFO_SIZE 16
#define UART8250_NR_PORTS  8
#define UART8250_TXQ_SIZE  256 /* bytes between THR and ops->output */

/* Register offsets and the bits the model gives meaning to. */
#define UART_RBR 0 /* read, DLAB=0 */
#define UART_THR 0 /* write, DLAB=0 */
#define UART_DLL 0 /* DLAB=1 */
#define UART_IER 1 /* DLAB=0 */
#define UART_DLM 1 /* DLAB=1 */
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01 /* received data available (and timeout) */
#define UART_IER_THRI 0x02 /* transmitter holding register empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI  0x08 /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI	0x00
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_IIR_RLSI	0x06
#define UART_IIR_TOI	0x0c /* character timeout */
#define UART_IIR_FIFO	0xc0 /* FIFOs enabled (16550A) */

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLR_RX 0x02
#define UART_FCR_CLR_TX 0x04
#define UART_FCR_TRIG	0xc0 /* RX trigger level: 1, 4, 8, 14 bytes */

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR	0x01
#define UART_LSR_OE	0x02
#define UART_LSR_PE	0x04
#define UART_LSR_FE	0x08
#define UART_LSR_BI	0x10
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_LSR_ERRORS (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS	0x01
#define UART_MSR_DDSR	0x02
#define UART_MSR_TERI	0x04
#define UART_MSR_DDCD	0x08
#define UART_MSR_DELTAS 0x0f
#define UART_MSR_CTS	0x10
#define UART_MSR_DSR	0x20
#define UART_MSR_RI	0x40
#define UART_MSR_DCD	0x80

/*
 * Everything the guest can observe, as plain data: snapshots copy it.
 * DR, THRE and TEMT are not stored; they follow from rx_count and the
 * instantaneous transmitter.
 */
struct uart8250_state {
	uint8_t dll, dlm; /* divisor latch */
	uint8_t ier;	  /* bits 0-3 */
	uint8_t fcr;	  /* FIFO enable + trigger level as last written */
	uint8_t lcr;
	uint8_t mcr; /* bits 0-4 */
	uint8_t lsr; /* sticky error bits only (UART_LSR_ERRORS) */
	uint8_t msr; /* status bits 4-7 and unread delta bits 0-3 */
	uint8_t scr;
	bool thr_ipending; /* THRE interrupt raised and not yet acknowledged */
	uint8_t rx_head;   /* index of the oldest byte in rx_fifo */
	uint8_t rx_count;  /* bytes waiting, at most UART8250_FIFO_SIZE */
	uint8_t rx_fifo[UART8250_FIFO_SIZE];
};

struct uart8250_ops {
	/* Bytes the guest transmitted, in order.  No lock held; may block. */
	void (*output)(void *opaque, const uint8_t *buf, size_t len);
	/*
	 * The receiver has drained after uart8250_receive() took less than it
	 * was offered: push more.  Called on the vCPU thread that emptied it,
	 * no lock held.  May be NULL.
	 */
	void (*rx_space)(void *opaque);
};

struct uart8250 {
	struct uart8250_state s; /* guarded by lock */

	/* Wiring: not guest-visible, not saved. */
	pthread_mutex_t lock;
	pthread_cond_t txq_cond; /* a THR writer waits here while txq is full */
	struct irq_line irq;
	const struct uart8250_ops *ops;
	void *opaque;
	uint16_t base;
	int irq_level;	  /* level last driven on irq */
	bool rx_wanted;	  /* the owner holds input that did not fit */
	bool tx_flushing; /* a thread is handing txq to ops->output */
	size_t txq_len;
	uint8_t txq[UART8250_TXQ_SIZE];
};

/*
 * Reset the UART to power-on state and claim ports [base, base+8) on pio.
 * ops->output is required.  0 or -errno (e.g. -EEXIST from the bus).
 */
int uart8250_init(struct uart8250 *u, struct bus *pio, uint16_t base, struct irq_line irq,
		  const struct uart8250_ops *ops, void *opaque);

/* Release the lock objects.  Does not unregister (bus_destroy does); no handler may run. */
void uart8250_destroy(struct uart8250 *u);

/*
 * Host input: copy as many bytes of buf as fit into the receiver and return
 * how many (0 when full, in loopback, or len 0).  When that is less than len,
 * ops->rx_space is called once the guest has emptied the receiver.  Any thread.
 */
size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len);

/* Copy the guest-visible state out (consistent snapshot under the lock). */
void uart8250_get_state(struct uart8250 *u, struct uart8250_state *st);

/*
 * Load guest-visible state and drive the IRQ line to match it.  -EINVAL if
 * st is inconsistent (FIFO indices out of range).  Input the owner still
 * holds should be offered again with uart8250_receive().
 */
int uart8250_set_state(struct uart8250 *u, const struct uart8250_state *st);

/*
 * State tree (include/state.h): the caller has opened the UART's node.
 * Save adds every register (DLL/DLM, IER, FCR, LCR, MCR, sticky LSR bits,
 * MSR, SCR), the pending THRE interrupt, the receive FIFO's bytes oldest
 * first and the IRQ level.  -EBUSY if a THR byte has not reached
 * ops->output yet (cannot happen with the VM paused), or a state_put error.
 *
 * Load checks every value against what the model can reach (reserved
 * bits clear, FIFO count within the receiver's capacity, MSR status bits
 * following MCR, THRE pending only with IER.THRI, IRQ level agreeing with
 * the registers) and applies nothing on -EINVAL.  It then drives the IRQ
 * line to the loaded level, even if unchanged, so the irqchip matches.
 */
int uart8250_save(struct uart8250 *u, void *fdt);
int uart8250_load(struct uart8250 *u, const void *fdt, int node);

#endif
