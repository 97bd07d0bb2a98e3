// SPDX-License-Identifier: MIT
/* State-tree helpers over libfdt: sized, big-endian properties. */
#include "state.h"

#include <errno.h>
#include <libfdt.h>
#include <string.h>

static int fdt_err(int err)
{
	if (err == -FDT_ERR_NOSPACE)
		return -ENOSPC;
	return err ? -EINVAL : 0;
}

int state_put_u32(void *fdt, const char *name, uint32_t v)
{
	return fdt_err(fdt_property_u32(fdt, name, v));
}

int state_put_u64(void *fdt, const char *name, uint64_t v)
{
	return fdt_err(fdt_property_u64(fdt, name, v));
}

int state_put_bytes(void *fdt, const char *name, const void *data, size_t len)
{
	if (len > INT32_MAX)
		return -EINVAL;
	return fdt_err(fdt_property(fdt, name, data, (int)len));
}

int state_get_bytes(const void *fdt, int node, const char *name, void *data, size_t len)
{
	int plen;
	const void *p = fdt_getprop(fdt, node, name, &plen);

	if (!p || plen < 0 || (size_t)plen != len)
		return -EINVAL;
	memcpy(data, p, len);
	return 0;
}

int state_get_u32(const void *fdt, int node, const char *name, uint32_t *v)
{
	fdt32_t raw;
	int ret = state_get_bytes(fdt, node, name, &raw, sizeof(raw));

	if (!ret)
		*v = fdt32_to_cpu(raw);
	return ret;
}

int state_get_u64(const void *fdt, int node, const char *name, uint64_t *v)
{
	fdt64_t raw;
	int ret = state_get_bytes(fdt, node, name, &raw, sizeof(raw));

	if (!ret)
		*v = fdt64_to_cpu(raw);
	return ret;
}

int state_tree_begin(void *buf, size_t size)
{
	int ret;

	if (size > INT32_MAX)
		return -EINVAL;
	ret = fdt_create(buf, (int)size);
	if (!ret)
		ret = fdt_finish_reservemap(buf);
	if (!ret)
		ret = fdt_begin_node(buf, "");
	return fdt_err(ret);
}

int state_tree_end(void *buf)
{
	int ret = fdt_end_node(buf);

	if (!ret)
		ret = fdt_finish(buf);
	return fdt_err(ret);
}

int state_tree_check(const void *tree, size_t len)
{
	if (len < sizeof(struct fdt_header) || len > INT32_MAX || fdt_magic(tree) != FDT_MAGIC ||
	    fdt_version(tree) != 17 || fdt_last_comp_version(tree) != 16 ||
	    fdt_totalsize(tree) != len)
		return -EINVAL;
	return fdt_check_full(tree, len) == 0 ? 0 : -EINVAL;
}

int state_find_node(const void *fdt, int node, const char *name)
{
	int off = fdt_subnode_offset(fdt, node, name);

	return off < 0 ? -ENOENT : off;
}

int state_put_string(void *fdt, const char *name, const char *s)
{
	return state_put_bytes(fdt, name, s, strlen(s) + 1);
}

int state_get_string(const void *fdt, int node, const char *name, char *buf, size_t size)
{
	int len;
	const char *p = fdt_getprop(fdt, node, name, &len);

	/* Exactly one NUL, at the end, and it fits: a saved string is untrusted. */
	if (!p || len < 1 || (size_t)len > size || p[len - 1] != '\0' ||
	    strlen(p) != (size_t)len - 1)
		return -EINVAL;
	memcpy(buf, p, (size_t)len);
	return 0;
}
