/* The probe: run inside a test container, it reports what the container sees as
 * one JSON object on stdout, or performs one action the tests need. */
#ifndef PROBE_H
#define PROBE_H

#include <stdbool.h>
#include <stddef.h>

/* A fact writes one key and its value into the open top-level object. */
typedef void (*fact_fn)(void);

struct fact {
	const char *name;
	fact_fn fn;
};

extern const struct fact facts[];
extern const size_t nfacts;

/* Reads a whole small file (/proc, /sys) into a NUL-terminated heap buffer; NULL on error. */
char *slurp(const char *path, size_t *len);
/* Writes {"ok":..,"errno":..,"error":..} fields for a result (rc < 0 means failed with err). */
void j_result_fields(int rc, int err);
/* errno name such as "EPERM" ("E<n>" for unknown). */
const char *errno_name(int err);

void fact_sysctl(const char *key);

/* Actions; each returns the process exit status. */
int act_try(int argc, char **argv);
int act_write(const char *path);
int act_read(const char *path);
int act_sleep(const char *seconds);
int act_echo_stdin(void);
int act_signals(void);
int act_exe_watch(const char *seconds, const char *stop_file);
int act_fork(const char *count);

#endif
