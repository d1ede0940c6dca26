/* The executor after clone: waits for the child's ready (or failure), tells the
 * caller, and in wait mode stays as the process's parent, forwarding signals,
 * relaying the terminal, and exiting with the process's status.
 *
 * The channel with the child carries one-byte messages:
 *   child -> parent  'R' ready, 'E' an error was reported, 'M' + fd the pty master
 *   parent -> child  'G' go (maps written), 'A' ready acknowledged */
#include "executor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

/* In the child: commits to running. Until the executor acknowledges, its death
 * kills the child (PR_SET_PDEATHSIG); after, the child stands alone. */
void child_ready(struct run *r) {
  if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0) fail(errno, "prctl PR_SET_PDEATHSIG");
  if (chan_send(r->chan, 'R', -1) < 0) fail(errno, "tell the executor the process is ready");
  char c;
  if (chan_recv(r->chan, &c, NULL) != 1 || c != 'A') _exit(1); /* the executor died: never run half-made */
  close(r->chan);
  r->chan = -1;
  report_child(-1);
}

struct state {
  struct run *r;
  bool ready, error_reported;
};

/* Handles one message from the child; false on EOF. */
static bool on_chan(struct state *s) {
  char c;
  int fd;
  if (chan_recv(s->r->chan, &c, &fd) != 1) {
    close(s->r->chan);
    s->r->chan = -1;
    return false;
  }
  switch (c) {
    case 'R':
      report_ready();
      s->ready = true;
      if (chan_send(s->r->chan, 'A', -1) < 0) fail(errno, "acknowledge ready to the container process");
      if (!s->r->plan->wait) _exit(0);
      break;
    case 'E': s->error_reported = true; break;
    case 'M': if (fd >= 0) relay_start(fd); break;
    default: break;
  }
  return true;
}

static _Noreturn void finish(struct state *s, int status) {
  if (s->r->chan >= 0) while (on_chan(s)) {} /* what the child said before it died */
  if (!s->ready) {
    if (!s->error_reported) {
      char msg[128];
      if (WIFSIGNALED(status))
        snprintf(msg, sizeof msg, "the container process was killed by signal %d during setup", WTERMSIG(status));
      else
        snprintf(msg, sizeof msg, "the container process exited with status %d during setup", WEXITSTATUS(status));
      report_error("child", 0, msg);
    }
    _exit(1);
  }
  relay_finish();
  _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}

void parent_run(struct run *r) {
  struct state s = { .r = r };
  signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill the process's parent (the child is already cloned) */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (r->plan->wait)
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) fail(errno, "signalfd");

  for (;;) {
    /* A child that exited before SIGCHLD was blocked left no signal behind:
     * look for its exit on every round, not only when the signalfd fires. */
    int status;
    if (waitpid(r->child, &status, WNOHANG) == r->child) finish(&s, status);
    struct pollfd fds[4];
    int relay[2], nrelay, n = 0;
    fds[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
    fds[n++] = (struct pollfd){ .fd = r->chan, .events = POLLIN }; /* -1 is skipped by poll */
    relay_poll_fds(relay, &nrelay);
    for (int i = 0; i < nrelay; i++) fds[n++] = (struct pollfd){ .fd = relay[i], .events = POLLIN };
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      fail(errno, "poll");
    }
    if (fds[1].revents) on_chan(&s);
    if (nrelay) {
      int rev[2] = { fds[2].revents, nrelay > 1 ? fds[3].revents : 0 };
      relay_handle(rev);
    }
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) continue;
        if (sig == SIGWINCH && r->plan->console_relay) relay_winch();
        else kill(r->child, sig);
      }
    }
  }
}
