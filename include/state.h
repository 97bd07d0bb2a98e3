/* SPDX-License-Identifier: MIT */
/*
 * The state tree: every device saves and loads its guest-visible state as
 * one node of a flattened device tree (libfdt).  Snapshot, migration and
 * replication all carry the same tree.
 *
 * Saving uses libfdt's sequential-write API: the caller has opened the
 * device's node (fdt_begin_node) and the device adds properties with the
 * state_put_* helpers; the caller closes the node.  Loading gets a finished
 * tree (checked with fdt_check_full by whoever received it) and the node's
 * offset; the device reads with state_get_*, which fail with -EINVAL when a
 * property is missing or has the wrong size, so a device never trusts a
 * length from the tree.  A device checks the values themselves (queue sizes,
 * indices, addresses) before using them: a saved tree is untrusted input.
 *
 * Integers are stored big-endian (fdt convention) by the helpers.
 */
#ifndef VMM_STATE_H
#define VMM_STATE_H

#include <stddef.h>
#include <stdint.h>

int state_put_u32(void *fdt, const char *name, uint32_t v);
int state_put_u64(void *fdt, const char *name, uint64_t v);
int state_put_bytes(void *fdt, const char *name, const void *data, size_t len);
int state_put_string(void *fdt, const char *name, const char *s);

/* 0, or -EINVAL if the property is missing or not exactly the right size. */
int state_get_u32(const void *fdt, int node, const char *name, uint32_t *v);
int state_get_u64(const void *fdt, int node, const char *name, uint64_t *v);
int state_get_bytes(const void *fdt, int node, const char *name, void *data, size_t len);
/* A NUL-terminated string of at most size bytes (NUL included), else -EINVAL. */
int state_get_string(const void *fdt, int node, const char *name, char *buf, size_t size);

/* Start a sequential-write tree in buf (size bytes) with a root node; 0 or -ENOSPC. */
int state_tree_begin(void *buf, size_t size);

/* Close the root node and finish the tree; 0 or -ENOSPC. */
int state_tree_end(void *buf);

/*
 * A tree from outside (a file, a peer) that is exactly len bytes and whole:
 * the header of the version state_tree_end writes (17), then
 * fdt_check_full.  libfdt 1.6 crashes in fdt_check_full on some trees of
 * older versions, so those never reach it.  0 or -EINVAL.
 */
int state_tree_check(const void *tree, size_t len);

/* The offset of child `name` of node, or -ENOENT. */
int state_find_node(const void *fdt, int node, const char *name);

#endif
