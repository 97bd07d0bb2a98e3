// SPDX-License-Identifier: MIT
/* 16550A UART: registers, receive FIFO, interrupt priority, ordered output. */
#include "uart8250.h"
#include "state.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* MSR status bits when nothing drives the modem lines: a null-modem cable. */
#define MSR_IDLE (UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS)

static bool fifo_on(const struct uart8250_state *s)
{
	return s->fcr & UART_FCR_ENABLE;
}

static unsigned rx_capacity(const struct uart8250_state *s)
{
	return fifo_on(s) ? UART8250_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct uart8250_state *s)
{
	static const unsigned levels[4] = {1, 4, 8, 14};

	return levels[s->fcr >> 6];
}

/* Highest-priority enabled interrupt, as the IIR identification bits. */
static uint8_t pending_iir(const struct uart8250_state *s)
{
	if ((s->ier & UART_IER_RLSI) && (s->lsr & UART_LSR_ERRORS))
		return UART_IIR_RLSI;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo_on(s) && s->rx_count < rx_trigger(s) ? UART_IIR_TOI : UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thr_ipending)
		return UART_IIR_THRI;
	if ((s->ier & UART_IER_MSI) && (s->msr & UART_MSR_DELTAS))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

static int irq_level(const struct uart8250_state *s)
{
	return pending_iir(s) != UART_IIR_NO_INT && (s->mcr & UART_MCR_OUT2) &&
	       !(s->mcr & UART_MCR_LOOP);
}

static void update_irq(struct uart8250 *u)
{
	int level = irq_level(&u->s);

	if (level != u->irq_level) {
		u->irq_level = level;
		irq_line_set(&u->irq, level);
	}
}

static void rx_clear(struct uart8250_state *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

/* A byte arriving at the receiver (loopback or host). */
static void rx_push(struct uart8250_state *s, uint8_t byte)
{
	if (s->rx_count < rx_capacity(s)) {
		s->rx_fifo[(s->rx_head + s->rx_count) % UART8250_FIFO_SIZE] = byte;
		s->rx_count++;
	} else if (!fifo_on(s)) {
		/* Without FIFO the new character overwrites the unread one. */
		s->rx_fifo[s->rx_head] = byte;
		s->lsr |= UART_LSR_OE;
	} else {
		/* A full FIFO keeps its contents; the new character is lost. */
		s->lsr |= UART_LSR_OE;
	}
}

static uint8_t rx_pop(struct uart8250_state *s)
{
	uint8_t byte;

	if (!s->rx_count)
		return 0;
	byte = s->rx_fifo[s->rx_head];
	s->rx_head = (s->rx_head + 1) % UART8250_FIFO_SIZE;
	s->rx_count--;
	return byte;
}

/* The modem inputs: looped back from MCR, or an idle null-modem cable. */
static uint8_t msr_inputs(const struct uart8250_state *s)
{
	uint8_t m = 0;

	if (!(s->mcr & UART_MCR_LOOP))
		return MSR_IDLE;
	if (s->mcr & UART_MCR_DTR)
		m |= UART_MSR_DSR;
	if (s->mcr & UART_MCR_RTS)
		m |= UART_MSR_CTS;
	if (s->mcr & UART_MCR_OUT1)
		m |= UART_MSR_RI;
	if (s->mcr & UART_MCR_OUT2)
		m |= UART_MSR_DCD;
	return m;
}

static void msr_update(struct uart8250_state *s)
{
	uint8_t old = s->msr, now = msr_inputs(s), delta = 0;

	if ((old ^ now) & UART_MSR_CTS)
		delta |= UART_MSR_DCTS;
	if ((old ^ now) & UART_MSR_DSR)
		delta |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(now & UART_MSR_RI))
		delta |= UART_MSR_TERI; /* trailing edge only */
	if ((old ^ now) & UART_MSR_DCD)
		delta |= UART_MSR_DDCD;
	s->msr = now | (old & UART_MSR_DELTAS) | delta;
}

/* A THR write; the caller holds the lock and flushes txq before returning. */
static void transmit(struct uart8250 *u, uint8_t byte)
{
	struct uart8250_state *s = &u->s;

	if (s->mcr & UART_MCR_LOOP) {
		rx_push(s, byte);
	} else {
		/* Full only while another vCPU is handing txq to output: wait for it. */
		while (u->txq_len == UART8250_TXQ_SIZE)
			pthread_cond_wait(&u->txq_cond, &u->lock);
		u->txq[u->txq_len++] = byte;
	}
	/* The byte left THR at once: THR is empty again. */
	s->thr_ipending = (s->ier & UART_IER_THRI) != 0;
}

static uint8_t reg_read(struct uart8250 *u, unsigned reg)
{
	struct uart8250_state *s = &u->s;
	uint8_t v;

	switch (reg) {
	case UART_RBR:
		if (s->lcr & UART_LCR_DLAB)
			return s->dll;
		return rx_pop(s);
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB)
			return s->dlm;
		return s->ier;
	case UART_IIR:
		v = pending_iir(s);
		/* Reading IIR acknowledges THRE when THRE is what it reports. */
		if (v == UART_IIR_THRI)
			s->thr_ipending = false;
		return v | (fifo_on(s) ? UART_IIR_FIFO : 0);
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		v = s->lsr | UART_LSR_THRE | UART_LSR_TEMT | (s->rx_count ? UART_LSR_DR : 0);
		s->lsr &= ~UART_LSR_ERRORS;
		return v;
	case UART_MSR:
		v = s->msr;
		s->msr &= ~UART_MSR_DELTAS;
		return v;
	default:
		return s->scr;
	}
}

static void reg_write(struct uart8250 *u, unsigned reg, uint8_t v)
{
	struct uart8250_state *s = &u->s;
	uint8_t old;

	switch (reg) {
	case UART_THR:
		if (s->lcr & UART_LCR_DLAB)
			s->dll = v;
		else
			transmit(u, v);
		break;
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB) {
			s->dlm = v;
			break;
		}
		old = s->ier;
		s->ier = v & 0x0f;
		/* Enabling ETBEI with THR empty (always) raises THRE: Linux tests for this edge. */
		if (!(old & UART_IER_THRI) && (s->ier & UART_IER_THRI))
			s->thr_ipending = true;
		else if (!(s->ier & UART_IER_THRI))
			s->thr_ipending = false;
		break;
	case UART_FCR:
		old = s->fcr;
		/* The trigger bits are only taken together with FIFO enable. */
		s->fcr = (v & UART_FCR_ENABLE) ? (v & (UART_FCR_ENABLE | UART_FCR_TRIG)) : 0;
		/* Switching the FIFOs on or off empties them, as does the reset bit. */
		if (((old ^ s->fcr) & UART_FCR_ENABLE) || (v & UART_FCR_CLR_RX))
			rx_clear(s);
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		msr_update(s);
		break;
	case UART_LSR:
	case UART_MSR:
		break; /* factory test registers: writes ignored */
	default:
		s->scr = v;
		break;
	}
}

/*
 * Hand queued output to ops->output without the lock, one thread at a time
 * so bytes leave in THR-write order.  Returns with the lock held and txq
 * empty, or with another thread still flushing (it drains what we added).
 */
static void tx_flush(struct uart8250 *u)
{
	uint8_t buf[UART8250_TXQ_SIZE];
	size_t n;

	if (u->tx_flushing)
		return;
	u->tx_flushing = true;
	while (u->txq_len) {
		n = u->txq_len;
		memcpy(buf, u->txq, n);
		u->txq_len = 0;
		pthread_cond_broadcast(&u->txq_cond);
		pthread_mutex_unlock(&u->lock);
		u->ops->output(u->opaque, buf, n);
		pthread_mutex_lock(&u->lock);
	}
	u->tx_flushing = false;
}

/* Does the owner get told to push more?  Once the receiver is empty and connected. */
static bool take_rx_space(struct uart8250 *u)
{
	if (!u->rx_wanted || u->s.rx_count || (u->s.mcr & UART_MCR_LOOP))
		return false;
	u->rx_wanted = false;
	return u->ops->rx_space != NULL;
}

static int uart_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct uart8250 *u = opaque;
	bool notify;

	pthread_mutex_lock(&u->lock);
	/* A wider access is that many byte accesses to consecutive registers. */
	for (uint32_t i = 0; i < len; i++) {
		if (is_write)
			reg_write(u, (unsigned)offset + i, data[i]);
		else
			data[i] = reg_read(u, (unsigned)offset + i);
	}
	update_irq(u);
	notify = take_rx_space(u);
	tx_flush(u);
	pthread_mutex_unlock(&u->lock);
	if (notify)
		u->ops->rx_space(u->opaque);
	return 0;
}

static void reset_state(struct uart8250_state *s)
{
	memset(s, 0, sizeof(*s));
	s->dll = 0x0c; /* 9600 baud from the 1.8432 MHz clock */
	s->msr = MSR_IDLE;
}

int uart8250_init(struct uart8250 *u, struct bus *pio, uint16_t base, struct irq_line irq,
		  const struct uart8250_ops *ops, void *opaque)
{
	int ret;

	if (!ops || !ops->output)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	reset_state(&u->s);
	u->irq = irq;
	u->ops = ops;
	u->opaque = opaque;
	u->base = base;
	ret = pthread_mutex_init(&u->lock, NULL);
	if (ret)
		return -ret;
	ret = pthread_cond_init(&u->txq_cond, NULL);
	if (ret) {
		pthread_mutex_destroy(&u->lock);
		return -ret;
	}
	ret = bus_register(pio, base, UART8250_NR_PORTS, uart_io, u, "uart8250");
	if (ret) {
		uart8250_destroy(u);
		return ret;
	}
	return 0;
}

void uart8250_destroy(struct uart8250 *u)
{
	pthread_cond_destroy(&u->txq_cond);
	pthread_mutex_destroy(&u->lock);
}

size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len)
{
	struct uart8250_state *s;
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	s = &u->s;
	/* In loopback the receiver listens to THR, not to the outside. */
	if (!(s->mcr & UART_MCR_LOOP)) {
		while (n < len && s->rx_count < rx_capacity(s))
			rx_push(s, buf[n++]);
	}
	if (n < len)
		u->rx_wanted = true;
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

void uart8250_get_state(struct uart8250 *u, struct uart8250_state *st)
{
	pthread_mutex_lock(&u->lock);
	*st = u->s;
	pthread_mutex_unlock(&u->lock);
}

int uart8250_set_state(struct uart8250 *u, const struct uart8250_state *st)
{
	if (st->rx_head >= UART8250_FIFO_SIZE || st->rx_count > UART8250_FIFO_SIZE ||
	    (!(st->fcr & UART_FCR_ENABLE) && st->rx_count > 1))
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	u->s = *st;
	u->s.ier &= 0x0f;
	u->s.mcr &= 0x1f;
	u->s.lsr &= UART_LSR_ERRORS;
	/* Drive the line even if our cached level agrees: it may not match KVM's after a restore.
	 */
	u->irq_level = -1;
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

/* The registers, one u32 property each. */
static const struct {
	const char *name;
	size_t off;
} saved_regs[] = {
    {"dll", offsetof(struct uart8250_state, dll)}, {"dlm", offsetof(struct uart8250_state, dlm)},
    {"ier", offsetof(struct uart8250_state, ier)}, {"fcr", offsetof(struct uart8250_state, fcr)},
    {"lcr", offsetof(struct uart8250_state, lcr)}, {"mcr", offsetof(struct uart8250_state, mcr)},
    {"lsr", offsetof(struct uart8250_state, lsr)}, {"msr", offsetof(struct uart8250_state, msr)},
    {"scr", offsetof(struct uart8250_state, scr)},
};

int uart8250_save(struct uart8250 *u, void *fdt)
{
	struct uart8250_state s;
	uint8_t fifo[UART8250_FIFO_SIZE];
	size_t pending;
	int ret, level;

	pthread_mutex_lock(&u->lock);
	s = u->s;
	pending = u->txq_len;
	level = irq_level(&u->s);
	pthread_mutex_unlock(&u->lock);
	if (pending)
		return -EBUSY;
	/* Oldest byte first, so the tree does not depend on where the ring started. */
	for (unsigned i = 0; i < s.rx_count; i++)
		fifo[i] = s.rx_fifo[(s.rx_head + i) % UART8250_FIFO_SIZE];

	for (size_t i = 0; i < sizeof(saved_regs) / sizeof(saved_regs[0]); i++) {
		ret = state_put_u32(fdt, saved_regs[i].name,
				    ((const uint8_t *)&s)[saved_regs[i].off]);
		if (ret)
			return ret;
	}
	if ((ret = state_put_u32(fdt, "thr-ipending", s.thr_ipending)) ||
	    (ret = state_put_u32(fdt, "rx-count", s.rx_count)) ||
	    (ret = state_put_bytes(fdt, "rx-fifo", fifo, s.rx_count)) ||
	    (ret = state_put_u32(fdt, "irq-level", (uint32_t)level)))
		return ret;
	return 0;
}

/* Every value the model itself can produce, and nothing else. */
static bool state_valid(const struct uart8250_state *s)
{
	if (s->ier & ~0x0f || s->mcr & ~0x1f || s->lsr & ~UART_LSR_ERRORS)
		return false;
	/* FCR keeps enable and trigger, and reads 0 with the FIFO off. */
	if (s->fcr & ~(UART_FCR_ENABLE | UART_FCR_TRIG) || (s->fcr && !fifo_on(s)))
		return false;
	/* MSR's status half always shows the modem inputs MCR selects. */
	if ((s->msr & ~UART_MSR_DELTAS) != msr_inputs(s))
		return false;
	/* THRE is only ever pending while its interrupt is enabled. */
	if (s->thr_ipending && !(s->ier & UART_IER_THRI))
		return false;
	return s->rx_head < UART8250_FIFO_SIZE && s->rx_count <= rx_capacity(s);
}

int uart8250_load(struct uart8250 *u, const void *fdt, int node)
{
	struct uart8250_state s;
	uint32_t v, count, thri, level;

	memset(&s, 0, sizeof(s));
	for (size_t i = 0; i < sizeof(saved_regs) / sizeof(saved_regs[0]); i++) {
		if (state_get_u32(fdt, node, saved_regs[i].name, &v) || v > 0xff)
			return -EINVAL;
		((uint8_t *)&s)[saved_regs[i].off] = (uint8_t)v;
	}
	if (state_get_u32(fdt, node, "thr-ipending", &thri) || thri > 1 ||
	    state_get_u32(fdt, node, "rx-count", &count) || count > UART8250_FIFO_SIZE ||
	    state_get_bytes(fdt, node, "rx-fifo", s.rx_fifo, count) ||
	    state_get_u32(fdt, node, "irq-level", &level))
		return -EINVAL;
	s.thr_ipending = thri;
	s.rx_count = (uint8_t)count;
	s.rx_head = 0;
	if (!state_valid(&s) || level != (uint32_t)irq_level(&s))
		return -EINVAL;
	return uart8250_set_state(u, &s);
}
