/* Small helpers: growable buffers, JSON string escaping, time, atomic files. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		warnx_log("out of memory");
		abort();
	}
	return p;
}

char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		warnx_log("out of memory");
		abort();
	}
	b->p = p;
	b->cap = cap;
}

void buf_add(struct buf *b, const void *data, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

/* Sends as much of b as a non-blocking socket takes now. 0 when all is sent or
 * the socket is full (the rest stays in b), -1 with errno on a real error. */
int buf_send(struct buf *b, int fd)
{
	while (b->len > 0) {
		ssize_t n = send(fd, b->p, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -1;
		buf_consume(b, (size_t)n);
	}
	return 0;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		buf_add(b, tmp, (size_t)n);
		return;
	}
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		/* give big buffers back once drained */
		if (b->cap > 64 * 1024) {
			free(b->p);
			b->p = NULL;
			b->cap = 0;
		}
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	unsigned cp = c & (0xff >> (len + 1));
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* As Go's encoding/json (which Docker's json-file uses) writes a string. */
void buf_json_str(struct buf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	buf_reserve(b, n + 2);
	buf_add(b, "\"", 1);
	size_t i = 0, run = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c < 0x80) {
			i++;
			run++;
			continue;
		}
		buf_add(b, s + i - run, run);
		run = 0;
		if (c < 0x80) {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			if (c == '"' || c == '\\') {
				char e2[2] = {'\\', (char)c};
				buf_add(b, e2, 2);
			} else if (c == '\n') {
				buf_add(b, "\\n", 2);
			} else if (c == '\r') {
				buf_add(b, "\\r", 2);
			} else if (c == '\t') {
				buf_add(b, "\\t", 2);
			} else {
				buf_add(b, esc, 6);
			}
			i++;
			continue;
		}
		size_t len = utf8_len(s + i, n - i);
		if (len == 0) {
			buf_add(b, "\\ufffd", 6);
			i++;
		} else if (len == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			buf_add(b, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			i += 3;
		} else {
			buf_add(b, s + i, len);
			i += len;
		}
	}
	buf_add(b, s + i - run, run);
	buf_add(b, "\"", 1);
}

void fmt_time(const struct timespec *ts, char out[40])
{
	struct tm tm;
	time_t t = ts->tv_sec;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%09ldZ", (long)ts->tv_nsec);
}

int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int write_atomic(const char *path, const char *data, size_t n)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, n) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

void warnx_log(const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	char t[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	fmt_time(&ts, t);
	int n = snprintf(line, sizeof line, "%s berth-shim[%d]: ", t, (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	(void)write_all(2, line, len);
}

int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}
