/* Messages to the caller on the sync fd: one JSON object per line (PLAN.md,
 * "Messages on the sync fd"). Every failure goes through fail(): it names the
 * stage, the errno and what was being done, then ends the process. */
#include "executor.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int sync_fd = -1;
static int chan_fd = -1;
static pid_t victim;
static const char *stage_name = "plan";
static int start_fd = -1; /* exec fifo write end, once start has opened it */

void report_init(int fd) { sync_fd = fd; }
void report_start_fd(int fd) { start_fd = fd; }
void report_child(int chan) { chan_fd = chan; victim = 0; }
void report_kill_on_fail(pid_t pid) { victim = pid; }
const char *current_stage(void) { return stage_name; }

/* Writes a whole line; the caller may be gone (no SIGPIPE: MSG_NOSIGNAL). */
static void send_line(const char *buf, size_t len) {
  if (sync_fd < 0) {
    if (write(2, buf, len) < 0) { /* nothing more to do */ }
    return;
  }
  while (len > 0) {
    ssize_t n = send(sync_fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(sync_fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

/* Appends s to out as a JSON string (with quotes). Returns the new length. */
static size_t json_string(char *out, size_t pos, size_t cap, const char *s) {
  static const char hex[] = "0123456789abcdef";
#define PUT(ch) do { if (pos + 1 < cap) out[pos++] = (ch); } while (0)
  PUT('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (pos + 8 >= cap) break;
    switch (*p) {
      case '"': PUT('\\'); PUT('"'); break;
      case '\\': PUT('\\'); PUT('\\'); break;
      case '\n': PUT('\\'); PUT('n'); break;
      case '\r': PUT('\\'); PUT('r'); break;
      case '\t': PUT('\\'); PUT('t'); break;
      default:
        if (*p < 0x20 || *p == 0x7f) {
          PUT('\\'); PUT('u'); PUT('0'); PUT('0'); PUT(hex[*p >> 4]); PUT(hex[*p & 15]);
        } else {
          PUT((char)*p);
        }
    }
  }
  PUT('"');
#undef PUT
  out[pos] = '\0';
  return pos;
}

void stage_quiet(const char *name) { stage_name = name; }

void stage(const char *name) {
  char buf[256];
  stage_name = name;
  size_t n = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"stage\",\"stage\":");
  n = json_string(buf, n, sizeof buf - 16, name);
  n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"errno\":0}\n");
  send_line(buf, n);
}

void report_pid(pid_t pid) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "{\"type\":\"pid\",\"pid\":%d}\n", (int)pid);
  send_line(buf, (size_t)n);
}

void report_hook(const char *event) {
  char buf[256];
  size_t n = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"hook\",\"event\":");
  n = json_string(buf, n, sizeof buf - 4, event);
  buf[n++] = '}';
  buf[n++] = '\n';
  send_line(buf, n);
}

void report_ready(void) {
  static const char line[] = "{\"type\":\"ready\"}\n";
  send_line(line, sizeof line - 1);
}

void report_error(const char *stg, int err, const char *message) {
  char buf[8192];
  size_t n = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"error\",\"stage\":");
  n = json_string(buf, n, 128, stg);
  n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"errno\":%d,\"message\":", err);
  n = json_string(buf, n, sizeof buf - 4, message);
  buf[n++] = '}';
  buf[n++] = '\n';
  send_line(buf, n);
}

void errno_text(int err, char *buf, size_t len) {
  const char *name = strerrorname_np(err);
  char num[16];
  if (!name) {
    snprintf(num, sizeof num, "E%d", err);
    name = num;
  }
  snprintf(buf, len, "%s (%s)", name, strerror(err));
}

static _Noreturn void vfail(int err, const char *detail, const char *fmt, va_list ap) {
  char msg[4096];
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  if (err) {
    char et[128];
    errno_text(err, et, sizeof et);
    n += snprintf(msg + n, sizeof msg - (size_t)n, ": %s", et);
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  }
  if (detail && *detail) snprintf(msg + n, sizeof msg - (size_t)n, ": %s", detail);
  report_error(stage_name, err, msg);
  if (start_fd >= 0) {
    /* `start` is reading the fifo: it shows this as its own error. */
    size_t len = strlen(msg);
    while (len > 0) {
      ssize_t w = write(start_fd, msg, len);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      len -= (size_t)w;
    }
  }
  if (chan_fd >= 0) chan_send(chan_fd, 'E', -1);
  if (victim > 0) {
    kill(victim, SIGKILL);
    while (waitpid(victim, NULL, 0) < 0 && errno == EINTR) {}
  }
  _exit(1);
}

void fail(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, NULL, fmt, ap);
}

void fail_detail(int err, const char *detail, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, detail, fmt, ap);
}
