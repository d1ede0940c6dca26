/* A tiny streaming JSON writer for the probe: writes straight to stdout. */
#ifndef PROBE_JSON_H
#define PROBE_JSON_H

#include <stdbool.h>
#include <stddef.h>

void j_obj_begin(void);
void j_obj_end(void);
void j_arr_begin(void);
void j_arr_end(void);
/* A key inside an object; the value written next belongs to it. */
void j_key(const char *key);
void j_str(const char *s);
void j_strn(const char *s, size_t n);
void j_int(long long v);
void j_bool(bool v);
void j_null(void);

/* Key and value in one call. */
void j_kstr(const char *key, const char *s);
void j_kint(const char *key, long long v);
void j_kbool(const char *key, bool v);

/* Ends the document with a newline and flushes stdout. */
void j_done(void);

#endif
