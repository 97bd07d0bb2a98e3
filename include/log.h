/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr.  Each message is one line prefixed "vmm: ".  pr_err is
 * for what a user must see; pr_info/pr_debug only print at raised verbosity
 * (log_verbosity, set once by main from the command line, read elsewhere).
 * When stderr is a raw-mode terminal the line ends in "\r\n" so it stays
 * readable.
 */
#ifndef VMM_LOG_H
#define VMM_LOG_H

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_verbosity; /* default LOG_WARN */

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define pr_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
