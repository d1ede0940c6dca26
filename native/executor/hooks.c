/* OCI hooks the executor runs itself (createContainer, startContainer), and the
 * createRuntime handshake with the caller, who runs those hooks. */
#include "executor.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *event_name(enum hook_event e) {
  return e == HOOK_CREATE_CONTAINER ? "createContainer" : "startContainer";
}

/* Tells the caller to run its hooks now and waits for its "ok". */
/* Stops for the caller's createRuntime hooks. The answer is "ok", optionally
 * followed by a space and the OCI state JSON, which then replaces the plan's
 * `state` for the hooks this process runs (the plan is written before the
 * container's host pid is known; the caller knows it by now). */
void hook_sync(struct run *r) {
  const char *event = r->plan->hook_sync;
  if (!event) return;
  report_hook(event);
  size_t cap = 256, n = 0;
  char *line = malloc(cap);
  if (!line) fail(ENOMEM, "hook %s: answer buffer", event);
  for (;;) {
    char c;
    ssize_t k = read(r->sync_fd, &c, 1);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail(errno, "hook %s: read the caller's answer", event);
    if (k == 0) fail(EPIPE, "hook %s: the caller closed the sync channel without an answer", event);
    if (c == '\n') break;
    if (n + 1 >= cap) {
      if (cap >= (1u << 20)) fail(E2BIG, "hook %s: the caller's answer is too long", event);
      cap *= 2;
      char *bigger = realloc(line, cap);
      if (!bigger) fail(ENOMEM, "hook %s: answer buffer", event);
      line = bigger;
    }
    line[n++] = c;
  }
  line[n] = '\0';
  if (!strncmp(line, "ok ", 3)) {
    r->plan->state = line + 3; /* lives as long as the process */
    return;
  }
  if (strcmp(line, "ok")) fail(ECANCELED, "hook %s: aborted by the caller (%.200s)", event, line);
  free(line);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Runs one hook: state on stdin, output collected for the error message. */
static void run_hook(const struct plan *p, const struct hook_rec *h) {
  const char *ev = event_name(h->event);
  int state = memfd_create("berth-hook-state", MFD_CLOEXEC);
  if (state < 0) fail(errno, "hook %s %s: memfd for the state", ev, h->path);
  write_full(state, p->state, strlen(p->state));
  lseek(state, 0, SEEK_SET);
  int out[2];
  if (pipe2(out, O_CLOEXEC) < 0) fail(errno, "hook %s %s: pipe", ev, h->path);
  pid_t pid = fork();
  if (pid < 0) fail(errno, "hook %s %s: fork", ev, h->path);
  if (pid == 0) {
    dup2(state, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    char *argv0[] = { (char *)h->path, NULL };
    execve(h->path, h->args[0] ? h->args : argv0, h->env);
    dprintf(2, "exec %s: %s", h->path, strerror(errno));
    _exit(127);
  }
  close(state);
  close(out[1]);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  char output[1024];
  size_t olen = 0;
  long deadline = h->timeout ? now_ms() + 1000L * h->timeout : -1;
  bool exited = false, eof = false;
  while (!exited) {
    struct pollfd fds[2] = { { .fd = pidfd, .events = POLLIN }, { .fd = eof ? -1 : out[0], .events = POLLIN } };
    int wait = deadline < 0 ? (pidfd < 0 ? 100 : -1) : (int)(deadline - now_ms());
    if (deadline >= 0 && wait <= 0) {
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
      fail(ETIMEDOUT, "hook %s %s: timed out after %us", ev, h->path, h->timeout);
    }
    if (pidfd < 0 && wait > 100) wait = 100;
    if (poll(fds, 2, wait) < 0 && errno != EINTR) fail(errno, "hook %s %s: poll", ev, h->path);
    if (!eof && (fds[1].revents & (POLLIN | POLLHUP))) {
      char buf[512];
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) eof = true;
      for (ssize_t i = 0; i < n && olen < sizeof output - 1; i++) output[olen++] = buf[i];
    }
    if (pidfd < 0 || (fds[0].revents & POLLIN)) {
      int status;
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        /* Take what is already written; a daemonized grandchild may keep the pipe open. */
        fcntl(out[0], F_SETFL, O_NONBLOCK);
        ssize_t n;
        while (olen < sizeof output - 1 && (n = read(out[0], output + olen, sizeof output - 1 - olen)) > 0) olen += (size_t)n;
        output[olen] = '\0';
        while (olen && (output[olen - 1] == '\n' || output[olen - 1] == ' ')) output[--olen] = '\0';
        if (WIFSIGNALED(status))
          fail(0, "hook %s %s: killed by signal %d%s%s", ev, h->path, WTERMSIG(status), olen ? ": " : "", output);
        if (WEXITSTATUS(status))
          fail(0, "hook %s %s: exited with status %d%s%s", ev, h->path, WEXITSTATUS(status), olen ? ": " : "", output);
      }
    }
  }
  if (pidfd >= 0) close(pidfd);
  close(out[0]);
}

void run_hooks(const struct plan *p, enum hook_event event) {
  for (size_t i = 0; i < p->hooks.n; i++)
    if (p->hooks.v[i].event == event) run_hook(p, &p->hooks.v[i]);
}
