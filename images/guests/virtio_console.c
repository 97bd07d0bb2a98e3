// SPDX-License-Identifier: MIT
/*
 * virtio_console: drives hvc0 (virtio-console, one port) from ring 3 with
 * the kit's polling driver.  On hvc0 it writes `hvc0: hello <seed>` through
 * transmitq0 and `hvc0: emergency` through the emerg_wr config register.
 * With lines=N it then reads N lines from receiveq0 and echoes each back
 * on hvc0 as `hvc0: echo <line>`.  On the serial port: the size it read
 * from config, then `virtio_console: ok lines=<n>` (status 0) or
 * `virtio_console: FAIL <reason>` (status 1).  timeout_ms= bounds the wait
 * for input (default 20000).
 */
#include "kit.h"

#define CON_F_SIZE	  0
#define CON_F_EMERG_WRITE 2
#define RXQ		  0
#define TXQ		  1
#define RX_BUFS		  8
#define RX_LEN		  64
#define LINE_MAX	  512

struct con_cfg {
	uint16_t cols, rows;
	uint32_t max_nr_ports, emerg_wr;
};

static uint8_t *rx_buf[VIRTIO_KIT_QUEUE_MAX];

static int send(struct virtio_device *dev, const char *s, size_t n)
{
	static char *tx;
	struct virtio_buf b;
	uint32_t len;

	if (!tx && !(tx = virtio_alloc(LINE_MAX + 32, 64)))
		return -1;
	memcpy(tx, s, n);
	b = (struct virtio_buf){tx, (uint32_t)n};
	if (virtio_submit(dev, TXQ, &b, 1, 0) < 0 || virtio_wait_used(dev, TXQ, &len) < 0)
		return -1;
	return 0;
}

static int post_rx(struct virtio_device *dev, uint8_t *buf)
{
	struct virtio_buf b = {buf, RX_LEN};
	int head = virtio_submit(dev, RXQ, &b, 0, 1);

	if (head >= 0)
		rx_buf[head] = buf;
	return head;
}

/* Read `lines` lines from receiveq0 and echo each back; 0 or -1. */
static int echo_lines(struct virtio_device *dev, uint64_t lines, uint64_t timeout_ms)
{
	static char line[LINE_MAX], out[LINE_MAX + 32];
	size_t fill = 0;
	uint64_t done = 0, deadline = rdtsc() + timeout_ms * tsc_khz();
	uint8_t *bufs = virtio_alloc(RX_BUFS * RX_LEN, 64);
	uint32_t len;
	int head;

	if (!bufs)
		return -1;
	for (int i = 0; i < RX_BUFS; i++)
		if (post_rx(dev, bufs + i * RX_LEN) < 0)
			return -1;
	while (done < lines) {
		head = virtio_poll_used(dev, RXQ, &len);
		if (head < 0) {
			if (rdtsc() > deadline) {
				printf("virtio_console: FAIL only %lu of %lu lines in %lu ms\n",
				       done, lines, timeout_ms);
				return -1;
			}
			cpu_relax();
			continue;
		}
		if (len > RX_LEN) {
			printf("virtio_console: FAIL device wrote %u bytes into %d\n", len, RX_LEN);
			return -1;
		}
		for (uint32_t i = 0; i < len && done < lines; i++) {
			char c = (char)rx_buf[head][i];

			if (c != '\n' && fill < LINE_MAX - 1) {
				line[fill++] = c;
				continue;
			}
			line[fill] = 0;
			size_t n = (size_t)snprintf(out, sizeof(out), "hvc0: echo %s\n", line);
			if (send(dev, out, n))
				return -1;
			fill = 0;
			done++;
		}
		if (post_rx(dev, rx_buf[head]) < 0)
			return -1;
	}
	return 0;
}

int main(const char *cmdline)
{
	struct virtio_device dev;
	volatile struct con_cfg *cfg;
	uint64_t lines = cmdline_get_u64("lines", 0), seed = cmdline_get_u64("seed", 1);
	char msg[64];
	size_t n;

	(void)cmdline;
	if (virtio_find(VIRTIO_ID_CONSOLE, &dev)) {
		printf("virtio_console: FAIL no virtio-console device (%s)\n", virtio_error());
		return KIT_EXIT_FAIL;
	}
	if (virtio_init(&dev, 1ULL << CON_F_SIZE | 1ULL << CON_F_EMERG_WRITE) ||
	    virtio_queue_setup(&dev, RXQ, 0) || virtio_queue_setup(&dev, TXQ, 0) ||
	    virtio_driver_ok(&dev)) {
		printf("virtio_console: FAIL set-up: %s (status 0x%x)\n", virtio_error(),
		       virtio_status(&dev));
		return KIT_EXIT_FAIL;
	}
	cfg = virtio_device_cfg(&dev);
	if (!cfg || !(dev.features & (1ULL << CON_F_EMERG_WRITE))) {
		printf("virtio_console: FAIL no config or no EMERG_WRITE\n");
		return KIT_EXIT_FAIL;
	}
	printf("virtio_console: device at 00:%02x.0 size=%ux%u\n", dev.slot, cfg->cols, cfg->rows);
	n = (size_t)snprintf(msg, sizeof(msg), "hvc0: hello %lu\n", seed);
	if (send(&dev, msg, n)) {
		printf("virtio_console: FAIL transmit: %s\n", virtio_error());
		return KIT_EXIT_FAIL;
	}
	for (const char *p = "hvc0: emergency\n"; *p; p++)
		cfg->emerg_wr = (uint8_t)*p;
	if (lines && echo_lines(&dev, lines, cmdline_get_u64("timeout_ms", 20000)))
		return KIT_EXIT_FAIL;
	printf("virtio_console: ok lines=%lu\n", lines);
	return KIT_EXIT_OK;
}
