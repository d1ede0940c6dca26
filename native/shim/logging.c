/* The json-file log, in Docker's format and with Docker's rotation (see PROTOCOL.md). */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
	int fd;
	const char *path;
	long long size, max_size;
	int max_files;
} lg = {.fd = -1};

int jlog_open(const char *path, long long max_size, int max_files)
{
	lg.path = path;
	lg.max_size = max_size;
	lg.max_files = max_files < 1 ? 1 : max_files;
	lg.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (lg.fd < 0)
		return -1;
	struct stat st;
	lg.size = fstat(lg.fd, &st) == 0 ? st.st_size : 0;
	return 0;
}

static void rotate(void)
{
	if (lg.max_files <= 1) {
		if (ftruncate(lg.fd, 0) < 0)
			warnx_log("truncate %s: %m", lg.path);
		lg.size = 0;
		return;
	}
	char from[4200], to[4200];
	for (int i = lg.max_files - 1; i > 1; i--) {
		snprintf(from, sizeof from, "%s.%d", lg.path, i - 1);
		snprintf(to, sizeof to, "%s.%d", lg.path, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			warnx_log("rotate %s: %m", from);
	}
	snprintf(to, sizeof to, "%s.1", lg.path);
	if (rename(lg.path, to) < 0)
		warnx_log("rotate %s: %m", lg.path);
	int fd = open(lg.path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		warnx_log("reopen %s: %m", lg.path);
		return; /* keep writing to the renamed file rather than lose lines */
	}
	close(lg.fd);
	lg.fd = fd;
	lg.size = 0;
}

/* One log entry: data is one line (with its '\n') or a piece of one. */
void jlog_write(const char *stream, const char *data, size_t n, const struct timespec *ts)
{
	static struct buf line;
	if (lg.fd < 0)
		return;
	char t[40];
	fmt_time(ts, t);
	line.len = 0;
	buf_adds(&line, "{\"log\":");
	buf_json_str(&line, data, n);
	buf_addf(&line, ",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, t);
	if (lg.max_size > 0 && lg.size >= lg.max_size)
		rotate();
	if (write_all(lg.fd, line.p, line.len) < 0) {
		warnx_log("write %s: %m", lg.path);
		return;
	}
	lg.size += (long long)line.len;
	if (line.cap > 64 * 1024)
		buf_free(&line);
}
