// SPDX-License-Identifier: MIT
/* Boot entry point: read the files, detect the kernel's format, lay out low memory. */
#include "boot.h"
#include "acpi.h"
#include "bzimage.h"
#include "e820.h"
#include "layout.h"
#include "log.h"
#include "pvh.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1ULL << 20)
#define KIB (1ULL << 10)

/* "16 MiB", "600 KiB": rounded up, since it is said of what something needs. */
static const char *fmt_size(char *buf, size_t n, uint64_t bytes)
{
	if (bytes >= MIB)
		snprintf(buf, n, "%llu MiB", (unsigned long long)(bytes / MIB + !!(bytes % MIB)));
	else
		snprintf(buf, n, "%llu KiB", (unsigned long long)(bytes / KIB + !!(bytes % KIB)));
	return buf;
}

int boot_err_too_small(const struct guest_mem *mem, uint64_t need, uint64_t load, size_t initrd_len)
{
	char k[32], i[32], r[32];

	fmt_size(k, sizeof(k), need);
	fmt_size(r, sizeof(r), mem->ram_size);
	if (initrd_len)
		pr_err("memory too small: kernel needs %s at %#llx, initrd %s, only %s of RAM", k,
		       (unsigned long long)load, fmt_size(i, sizeof(i), initrd_len), r);
	else
		pr_err("memory too small: kernel needs %s at %#llx, only %s of RAM", k,
		       (unsigned long long)load, r);
	return -ENOMEM;
}

int boot_write_cmdline(struct guest_mem *mem, const char *cmdline, size_t max_len, const char *name)
{
	size_t len, max = max_len < LAYOUT_CMDLINE_MAX - 1 ? max_len : LAYOUT_CMDLINE_MAX - 1;

	if (!cmdline)
		cmdline = "";
	len = strlen(cmdline);
	if (len > max) {
		pr_err("%s: command line is %zu bytes, the kernel accepts at most %zu", name, len,
		       max);
		return -E2BIG;
	}
	if (guest_mem_write(mem, LAYOUT_CMDLINE, cmdline, len + 1)) {
		pr_err("%s: no RAM for the command line at %#llx", name,
		       (unsigned long long)LAYOUT_CMDLINE);
		return -EFAULT;
	}
	return 0;
}

int boot_place_initrd(struct guest_mem *mem, const uint8_t *initrd, size_t len, uint64_t floor,
		      uint64_t limit, uint64_t *addr)
{
	uint64_t at;

	*addr = 0;
	if (len == 0)
		return 0;
	if (limit < len)
		return -ENOMEM;
	at = (limit - len) & ~(GUEST_PAGE_SIZE - 1);
	if (at < floor || guest_mem_write(mem, at, initrd, len))
		return -ENOMEM;
	*addr = at;
	return 0;
}

int boot_load_buffers(struct guest_mem *mem, const uint8_t *kernel, size_t kernel_len,
		      const uint8_t *initrd, size_t initrd_len, const char *cmdline, unsigned ncpus,
		      struct boot_entry *entry, const char *kernel_name)
{
	const char *name = kernel_name ? kernel_name : "kernel";
	uint64_t rsdp;
	bool is_bzimage;
	int ret;

	if (!kernel || kernel_len == 0) {
		pr_err("%s: file is empty", name);
		return -ENOEXEC;
	}
	if (!initrd)
		initrd_len = 0;
	if (ncpus < 1 || ncpus > ACPI_MAX_CPUS) {
		pr_err("%u vCPUs: must be 1 to %u", ncpus, ACPI_MAX_CPUS);
		return -EINVAL;
	}
	if (bzimage_detect(kernel, kernel_len))
		is_bzimage = true;
	else if (pvh_detect(kernel, kernel_len))
		is_bzimage = false;
	else {
		pr_err("%s: not a bzImage or PVH ELF", name);
		return -ENOEXEC;
	}

	ret = acpi_build(mem, ncpus, &rsdp);
	if (!ret)
		ret = boot_write_gdt(mem);
	if (!ret)
		ret = boot_write_page_tables(mem);
	if (ret) {
		/* guest_mem guarantees RAM at 0, so this is a VMM bug rather than bad input. */
		pr_err("boot structures in low memory: %s", strerror(-ret));
		return ret;
	}
	if (is_bzimage)
		return bzimage_load(mem, kernel, kernel_len, initrd, initrd_len, cmdline, rsdp,
				    entry, name);
	return pvh_load(mem, kernel, kernel_len, initrd, initrd_len, cmdline, rsdp, entry, name);
}

/*
 * Read a whole regular file of at most max bytes.  On error prints one line
 * naming path and returns -errno.
 */
static int read_file(const char *path, uint64_t max, uint8_t **data, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t done = 0;
	ssize_t n;
	int fd, ret;
	char a[32], b[32];

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_err("%s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		pr_err("%s: %s", path, strerror(-ret));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = -EISDIR;
		pr_err("%s: %s", path, strerror(EISDIR));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		pr_err("%s: not a regular file", path);
		goto out;
	}
	if (st.st_size == 0) {
		ret = -ENOEXEC;
		pr_err("%s: file is empty", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		ret = -EFBIG;
		pr_err("%s: %s does not fit in %s of RAM", path,
		       fmt_size(a, sizeof(a), (uint64_t)st.st_size), fmt_size(b, sizeof(b), max));
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		ret = -ENOMEM;
		pr_err("%s: out of memory for %s", path,
		       fmt_size(a, sizeof(a), (uint64_t)st.st_size));
		goto out;
	}
	while (done < (size_t)st.st_size) {
		n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			pr_err("%s: %s", path, strerror(-ret));
			goto out;
		}
		if (n == 0) {
			ret = -EIO;
			pr_err("%s: file shrank while being read", path);
			goto out;
		}
		done += (size_t)n;
	}
	*data = buf;
	*len = done;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

int boot_load(struct guest_mem *mem, const struct boot_config *cfg, struct boot_entry *entry)
{
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t kernel_len = 0, initrd_len = 0;
	int ret;

	if (!cfg->kernel_path) {
		pr_err("no kernel given");
		return -EINVAL;
	}
	ret = read_file(cfg->kernel_path, mem->ram_size, &kernel, &kernel_len);
	if (!ret && cfg->initrd_path)
		ret = read_file(cfg->initrd_path, mem->ram_size, &initrd, &initrd_len);
	if (!ret)
		ret = boot_load_buffers(mem, kernel, kernel_len, initrd, initrd_len, cfg->cmdline,
					cfg->ncpus, entry, cfg->kernel_path);
	free(kernel);
	free(initrd);
	return ret;
}
