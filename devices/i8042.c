// SPDX-License-Identifier: MIT
/* i8042 keyboard controller with empty ports, and system control port B. */
#include "i8042.h"
#include "layout.h"
#include "state.h"

#include <errno.h>
#include <string.h>

/* Controller commands (written to 0x64) the model acts on. */
#define CMD_READ_RAM	   0x20 /* 0x20-0x3f: read RAM byte n (0x20: command byte) */
#define CMD_WRITE_RAM	   0x60 /* 0x60-0x7f: write RAM byte n (0x60: command byte) */
#define CMD_AUX_DISABLE	   0xa7
#define CMD_AUX_ENABLE	   0xa8
#define CMD_AUX_TEST	   0xa9
#define CMD_SELF_TEST	   0xaa
#define CMD_KBD_TEST	   0xab
#define CMD_KBD_DISABLE	   0xad
#define CMD_KBD_ENABLE	   0xae
#define CMD_READ_INPUT	   0xc0
#define CMD_READ_OUTPORT   0xd0
#define CMD_WRITE_OUTPORT  0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3 /* AUX loopback */
#define CMD_WRITE_AUX	   0xd4
#define CMD_A20_OFF	   0xdd
#define CMD_A20_ON	   0xdf
#define CMD_READ_TEST	   0xe0
#define CMD_PULSE	   0xf0 /* 0xf0-0xff: pulse output-port bits 0-3 where the command has 0 */

#define SELF_TEST_OK	0x55
#define INTERFACE_OK	0x00
#define NO_DEVICE_REPLY 0xfe /* with I8042_STR_TIMEOUT: nothing clocked the byte in */
#define INPUT_PORT	0x80 /* keyboard not inhibited */

#define OUTPORT_RESET 0x01 /* active low */
#define OUTPORT_A20   0x02

#define PORTB_WRITABLE 0x0f
#define PORTB_REFRESH  0x10
#define PORTB_PIT2_OUT 0x20

/* The levels IRQ 1 and 12 should have in state s. */
static void irq_levels(const struct i8042_state *s, int *kbd, int *mouse)
{
	bool full = s->status & I8042_STR_OBF, aux = s->status & I8042_STR_AUXDATA;

	*kbd = full && !aux && (s->ram[0] & I8042_CTR_KBDINT);
	*mouse = full && aux && (s->ram[0] & I8042_CTR_AUXINT);
}

static void update_irqs(struct i8042 *k)
{
	int kbd, mouse;

	irq_levels(&k->s, &kbd, &mouse);

	if (kbd != k->kbd_level) {
		k->kbd_level = kbd;
		irq_line_set(&k->kbd_irq, kbd);
	}
	if (mouse != k->aux_level) {
		k->aux_level = mouse;
		irq_line_set(&k->aux_irq, mouse);
	}
}

/* A byte for the guest to read at 0x60, as if from the keyboard or the AUX port. */
static void put_output(struct i8042_state *s, uint8_t byte, bool aux, bool timeout)
{
	s->outbuf = byte;
	s->status &= (uint8_t) ~(I8042_STR_AUXDATA | I8042_STR_TIMEOUT);
	s->status |=
	    I8042_STR_OBF | (aux ? I8042_STR_AUXDATA : 0) | (timeout ? I8042_STR_TIMEOUT : 0);
}

/* Returns true when the command resets the machine. */
static bool command(struct i8042_state *s, uint8_t cmd)
{
	s->status |= I8042_STR_CMD;
	s->pending_cmd = 0; /* a new command abandons one waiting for data */

	if (cmd >= CMD_READ_RAM && cmd < CMD_READ_RAM + I8042_RAM_SIZE) {
		put_output(s, s->ram[cmd - CMD_READ_RAM], false, false);
		return false;
	}
	if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + I8042_RAM_SIZE) {
		s->pending_cmd = cmd;
		return false;
	}
	if (cmd >= CMD_PULSE)
		return !(cmd & OUTPORT_RESET);

	switch (cmd) {
	case CMD_AUX_DISABLE:
		s->ram[0] |= I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_ENABLE:
		s->ram[0] &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
		put_output(s, INTERFACE_OK, false, false);
		break;
	case CMD_SELF_TEST:
		put_output(s, SELF_TEST_OK, false, false);
		break;
	case CMD_KBD_DISABLE:
		s->ram[0] |= I8042_CTR_KBDDIS;
		break;
	case CMD_KBD_ENABLE:
		s->ram[0] &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case CMD_READ_INPUT:
		put_output(s, INPUT_PORT, false, false);
		break;
	case CMD_READ_OUTPORT:
		put_output(s, s->outport, false, false);
		break;
	case CMD_WRITE_OUTPORT:
	case CMD_WRITE_KBD_OBUF:
	case CMD_WRITE_AUX_OBUF:
	case CMD_WRITE_AUX:
		s->pending_cmd = cmd;
		break;
	case CMD_A20_OFF:
		s->outport &= (uint8_t)~OUTPORT_A20;
		break;
	case CMD_A20_ON:
		s->outport |= OUTPORT_A20;
		break;
	case CMD_READ_TEST:
		put_output(s, 0, false, false);
		break;
	default:
		break; /* unknown commands are ignored, as by most controllers */
	}
	return false;
}

/* A byte written to 0x60.  Returns true when it resets the machine. */
static bool data_write(struct i8042_state *s, uint8_t v)
{
	uint8_t cmd = s->pending_cmd;

	s->status &= (uint8_t)~I8042_STR_CMD;
	s->pending_cmd = 0;
	if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + I8042_RAM_SIZE) {
		s->ram[cmd - CMD_WRITE_RAM] = v;
		return false;
	}
	switch (cmd) {
	case CMD_WRITE_OUTPORT:
		s->outport = v;
		return !(v & OUTPORT_RESET);
	case CMD_WRITE_KBD_OBUF:
		put_output(s, v, false, false);
		break;
	case CMD_WRITE_AUX_OBUF:
		put_output(s, v, true, false);
		break;
	case CMD_WRITE_AUX:
		put_output(s, NO_DEVICE_REPLY, true, true);
		break;
	default:
		/* No command pending: the byte goes to the (absent) keyboard. */
		put_output(s, NO_DEVICE_REPLY, false, true);
		break;
	}
	return false;
}

static uint8_t data_read(struct i8042_state *s)
{
	s->status &= (uint8_t) ~(I8042_STR_OBF | I8042_STR_AUXDATA | I8042_STR_TIMEOUT);
	return s->outbuf;
}

static uint8_t status_read(const struct i8042_state *s)
{
	return s->status | I8042_STR_UNLOCK | ((s->ram[0] & I8042_CTR_SYS) ? I8042_STR_SYS : 0);
}

static uint8_t portb_read(struct i8042_state *s)
{
	uint8_t v = (s->portb & PORTB_WRITABLE) | (s->refresh ? PORTB_REFRESH : 0) | PORTB_PIT2_OUT;

	/* Firmware and old kernels time delays by watching the refresh bit flip. */
	s->refresh = !s->refresh;
	return v;
}

static int i8042_io(struct i8042 *k, unsigned port, uint8_t *data, bool is_write)
{
	bool reset = false;

	pthread_mutex_lock(&k->lock);
	switch (port) {
	case PORT_I8042_DATA:
		if (is_write)
			reset = data_write(&k->s, data[0]);
		else
			data[0] = data_read(&k->s);
		break;
	case PORT_I8042_CMD:
		if (is_write)
			reset = command(&k->s, data[0]);
		else
			data[0] = status_read(&k->s);
		break;
	default:
		if (is_write)
			k->s.portb = data[0] & PORTB_WRITABLE;
		else
			data[0] = portb_read(&k->s);
		break;
	}
	update_irqs(k);
	pthread_mutex_unlock(&k->lock);
	if (reset)
		k->reset(k->opaque);
	return 0;
}

static int data_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	(void)offset;
	(void)len; /* ranges are one port wide, so len is 1 */
	return i8042_io(opaque, PORT_I8042_DATA, data, is_write);
}

static int cmd_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	(void)offset;
	(void)len;
	return i8042_io(opaque, PORT_I8042_CMD, data, is_write);
}

static int portb_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	(void)offset;
	(void)len;
	return i8042_io(opaque, PORT_I8042_PORTB, data, is_write);
}

static void reset_state(struct i8042_state *s)
{
	memset(s, 0, sizeof(*s));
	/* What a BIOS leaves behind: translation on, POST passed, keyboard interrupt on. */
	s->ram[0] = I8042_CTR_XLATE | I8042_CTR_SYS | I8042_CTR_KBDINT;
	s->outport = OUTPORT_RESET | OUTPORT_A20;
}

int i8042_init(struct i8042 *k, struct bus *pio, struct irq_line kbd_irq, struct irq_line aux_irq,
	       void (*reset)(void *opaque), void *opaque)
{
	int ret;

	if (!reset)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	reset_state(&k->s);
	k->kbd_irq = kbd_irq;
	k->aux_irq = aux_irq;
	k->reset = reset;
	k->opaque = opaque;
	ret = pthread_mutex_init(&k->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(pio, PORT_I8042_DATA, 1, data_io, k, "i8042");
	if (!ret) {
		ret = bus_register(pio, PORT_I8042_PORTB, 1, portb_io, k, "port-b");
		if (!ret) {
			ret = bus_register(pio, PORT_I8042_CMD, 1, cmd_io, k, "i8042");
			if (ret)
				bus_unregister(pio, PORT_I8042_PORTB);
		}
		if (ret)
			bus_unregister(pio, PORT_I8042_DATA);
	}
	if (ret)
		pthread_mutex_destroy(&k->lock);
	return ret;
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

void i8042_get_state(struct i8042 *k, struct i8042_state *st)
{
	pthread_mutex_lock(&k->lock);
	*st = k->s;
	pthread_mutex_unlock(&k->lock);
}

static bool valid_pending(uint8_t cmd)
{
	return cmd == 0 || (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + I8042_RAM_SIZE) ||
	       cmd == CMD_WRITE_OUTPORT || cmd == CMD_WRITE_KBD_OBUF || cmd == CMD_WRITE_AUX_OBUF ||
	       cmd == CMD_WRITE_AUX;
}

int i8042_set_state(struct i8042 *k, const struct i8042_state *st)
{
	if (!valid_pending(st->pending_cmd))
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	k->s = *st;
	k->s.status &= I8042_STR_OBF | I8042_STR_CMD | I8042_STR_AUXDATA | I8042_STR_TIMEOUT;
	k->s.portb &= PORTB_WRITABLE;
	/* Force both lines to be driven: KVM's view may differ after a restore. */
	k->kbd_level = k->aux_level = -1;
	update_irqs(k);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

int i8042_save(struct i8042 *k, void *fdt)
{
	struct i8042_state s;
	int ret, kbd, mouse;

	pthread_mutex_lock(&k->lock);
	s = k->s;
	irq_levels(&k->s, &kbd, &mouse);
	pthread_mutex_unlock(&k->lock);

	if ((ret = state_put_bytes(fdt, "ram", s.ram, sizeof(s.ram))) ||
	    (ret = state_put_u32(fdt, "outport", s.outport)) ||
	    (ret = state_put_u32(fdt, "outbuf", s.outbuf)) ||
	    (ret = state_put_u32(fdt, "status", s.status)) ||
	    (ret = state_put_u32(fdt, "pending-cmd", s.pending_cmd)) ||
	    (ret = state_put_u32(fdt, "portb", s.portb)) ||
	    (ret = state_put_u32(fdt, "refresh", s.refresh)) ||
	    (ret = state_put_u32(fdt, "kbd-irq-level", (uint32_t)kbd)) ||
	    (ret = state_put_u32(fdt, "aux-irq-level", (uint32_t)mouse)))
		return ret;
	return 0;
}

/* A u32 property that must hold a value in [0, max]. */
static int get_small(const void *fdt, int node, const char *name, uint32_t max, uint32_t *v)
{
	if (state_get_u32(fdt, node, name, v) || *v > max)
		return -EINVAL;
	return 0;
}

int i8042_load(struct i8042 *k, const void *fdt, int node)
{
	const uint8_t stored =
	    I8042_STR_OBF | I8042_STR_CMD | I8042_STR_AUXDATA | I8042_STR_TIMEOUT;
	struct i8042_state s;
	uint32_t outport, outbuf, status, pending, portb, refresh, kbd_saved, aux_saved;
	int kbd, mouse;

	memset(&s, 0, sizeof(s));
	if (state_get_bytes(fdt, node, "ram", s.ram, sizeof(s.ram)) ||
	    get_small(fdt, node, "outport", 0xff, &outport) ||
	    get_small(fdt, node, "outbuf", 0xff, &outbuf) ||
	    get_small(fdt, node, "status", 0xff, &status) ||
	    get_small(fdt, node, "pending-cmd", 0xff, &pending) ||
	    get_small(fdt, node, "portb", PORTB_WRITABLE, &portb) ||
	    get_small(fdt, node, "refresh", 1, &refresh) ||
	    get_small(fdt, node, "kbd-irq-level", 1, &kbd_saved) ||
	    get_small(fdt, node, "aux-irq-level", 1, &aux_saved))
		return -EINVAL;
	/*
	 * SYS and UNLOCK are derived, IBF is never set; AUX and timeout come
	 * only with a byte, and a command waits for data only after a write to 0x64.
	 */
	if (status & ~(uint32_t)stored ||
	    ((status & (I8042_STR_AUXDATA | I8042_STR_TIMEOUT)) && !(status & I8042_STR_OBF)) ||
	    !valid_pending((uint8_t)pending) || (pending && !(status & I8042_STR_CMD)))
		return -EINVAL;
	s.outport = (uint8_t)outport;
	s.outbuf = (uint8_t)outbuf;
	s.status = (uint8_t)status;
	s.pending_cmd = (uint8_t)pending;
	s.portb = (uint8_t)portb;
	s.refresh = refresh;
	irq_levels(&s, &kbd, &mouse);
	if ((uint32_t)kbd != kbd_saved || (uint32_t)mouse != aux_saved)
		return -EINVAL;
	return i8042_set_state(k, &s);
}
