/* SPDX-License-Identifier: MIT */
/*
 * A tiny AML (ACPI Machine Language) encoder: just enough to write the
 * DSDT's names, packages, devices and resource templates.
 *
 * The encoder writes into a caller-supplied buffer.  Errors are sticky: the
 * first one (-ENOSPC when the buffer is full, -EINVAL for a bad name or
 * unbalanced nesting) is kept and every later call does nothing, so a
 * builder makes all its calls and checks aml_finish() once.
 *
 * Scopes, devices, packages and buffers are opened by their begin call and
 * closed by aml_end(); their PkgLength (and a buffer's size) is computed
 * when they close.
 */
#ifndef VMM_AML_H
#define VMM_AML_H

#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 8

struct aml {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int err;
	unsigned depth;
	struct {
		size_t body;   /* offset where the PkgLength goes */
		int is_buffer; /* a Buffer also needs its BufferSize */
	} open[AML_MAX_DEPTH];
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/* Bytes written so far in *len; 0, or the first error (also for unclosed scopes). */
int aml_finish(struct aml *a, size_t *len);

/*
 * A NameString: "\\_SB_.PCI0", "_S5_", "COM1".  Segments are 1-4 characters of
 * A-Z, 0-9, '_' (not starting with a digit), padded with '_'.
 */
void aml_namestring(struct aml *a, const char *path);

/* An integer in its shortest encoding (Zero, One, Byte/Word/DWord/QWordConst). */
void aml_integer(struct aml *a, uint64_t v);

/* A String constant. */
void aml_string(struct aml *a, const char *s);

/* Name(path, ...): the next object written is the value. */
void aml_name(struct aml *a, const char *path);

void aml_scope(struct aml *a, const char *path);
void aml_device(struct aml *a, const char *path);
void aml_package(struct aml *a, uint8_t nelems);
/* A Buffer; with the aml_res_* calls inside it is a ResourceTemplate. */
void aml_buffer(struct aml *a);
void aml_end(struct aml *a);

/* The 32-bit EISA ID of "PNP0A03" etc., as EisaId() encodes it; 0 if malformed. */
uint32_t aml_eisaid(const char *id);

/* Resource descriptors (ACPI 6.x section 6.4). */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq(struct aml *a, uint8_t irq); /* IRQNoFlags: edge, active high */
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);   /* producer window */
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max); /* non-cacheable, RW window */
void aml_res_end(struct aml *a);

#endif
