#include "json.h"

#include <stdio.h>
#include <string.h>

/* One flag per nesting level: whether a value was already written at that level. */
#define MAX_DEPTH 32
static bool written[MAX_DEPTH];
static int depth;
static bool after_key;

static void before_value(void)
{
	if (after_key) {
		after_key = false;
		return;
	}
	if (depth > 0 && written[depth - 1])
		putchar(',');
	if (depth > 0)
		written[depth - 1] = true;
}

static void open_level(char c)
{
	before_value();
	putchar(c);
	if (depth < MAX_DEPTH)
		written[depth] = false;
	depth++;
}

void j_obj_begin(void) { open_level('{'); }
void j_arr_begin(void) { open_level('['); }

void j_obj_end(void)
{
	depth--;
	putchar('}');
}

void j_arr_end(void)
{
	depth--;
	putchar(']');
}

static void put_escaped(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		default:
			/* Control bytes and bytes that are not ASCII are escaped so the output
			 * stays valid JSON whatever a file holds. */
			if (c < 0x20 || c >= 0x7f)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

void j_key(const char *key)
{
	before_value();
	put_escaped(key, strlen(key));
	putchar(':');
	after_key = true;
}

void j_strn(const char *s, size_t n)
{
	before_value();
	put_escaped(s, n);
}

void j_str(const char *s)
{
	if (!s) {
		j_null();
		return;
	}
	j_strn(s, strlen(s));
}

void j_int(long long v)
{
	before_value();
	printf("%lld", v);
}

void j_bool(bool v)
{
	before_value();
	fputs(v ? "true" : "false", stdout);
}

void j_null(void)
{
	before_value();
	fputs("null", stdout);
}

void j_kstr(const char *key, const char *s) { j_key(key); j_str(s); }
void j_kint(const char *key, long long v) { j_key(key); j_int(v); }
void j_kbool(const char *key, bool v) { j_key(key); j_bool(v); }

void j_done(void)
{
	putchar('\n');
	fflush(stdout);
}
