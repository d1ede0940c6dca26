/* The last steps before the container process runs: finding args[0], the exec
 * fifo that holds the process until `start`, the working directory check, the
 * fd sweep and execve. */
#include "executor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* In the executor, before any namespace is joined: the fifo is a host path. */
/* Creates the exec fifo (unless the caller made it) and holds it by an O_PATH fd.
 * Mode 0622: the process opens it for writing after taking the container's
 * user, who need not be root (as runc makes it). */
void open_fifo(struct run *r) {
  const char *path = r->plan->exec_fifo;
  if (!path) return;
  if (mkfifo(path, 0600) == 0) {
    if (chmod(path, 0622) < 0) fail(errno, "chmod exec fifo %s", path);
  } else if (errno != EEXIST) {
    fail(errno, "mkfifo exec fifo %s", path);
  }
  r->fifo_fd = open(path, O_PATH | O_CLOEXEC);
  if (r->fifo_fd < 0) fail(errno, "open exec fifo %s", path);
  struct stat st;
  if (fstat(r->fifo_fd, &st) < 0) fail(errno, "stat exec fifo %s", path);
  if (!S_ISFIFO(st.st_mode)) fail(EINVAL, "exec fifo %s is not a fifo", path);
}

static const char *getenv_in(char **env, const char *name) {
  size_t n = strlen(name);
  for (char **e = env; *e; e++)
    if (!strncmp(*e, name, n) && (*e)[n] == '=') return *e + n + 1;
  return NULL;
}

/* 0 if path (relative to the process's cwd, already entered) is an executable regular file, else an errno. */
static int executable(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode) || faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0) return EACCES;
  return 0;
}

/* Resolves args[0] as execvp would, with the PATH of the process's env, so that a
 * missing binary fails `create`, not `start`. */
void lookup_exe(struct run *r) {
  struct plan *p = r->plan;
  const char *arg0 = p->args.v[0];
  if (strchr(arg0, '/')) {
    int err = executable(arg0);
    if (err) fail(err, "exec: \"%s\"", arg0);
    r->exe = xstrdup(arg0);
    return;
  }
  const char *path = getenv_in(p->env.v, "PATH");
  if (path && *arg0) {
    char *copy = xstrdup(path);
    /* strsep keeps empty entries, which mean the working directory */
    for (char *dir = strsep(&copy, ":"); dir; dir = strsep(&copy, ":")) {
      char *cand = xasprintf("%s/%s", *dir ? dir : ".", arg0);
      if (executable(cand) == 0) {
        r->exe = cand;
        return;
      }
      free(cand);
    }
  }
  fail(ENOENT, "exec: \"%s\": executable file not found in $PATH", arg0);
}

/* Blocks until `start` opens the fifo for reading. */
/* Blocks until `start` opens the exec fifo for reading, then writes "0". The
 * write end stays open (close-on-exec) until execve: `start` reads to EOF, so
 * it sees a clean EOF when the process runs, or the text of any failure in
 * between (a startContainer hook, execve itself), which fail() writes here. */
void wait_for_start(struct run *r) {
  if (r->fifo_fd < 0) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", r->fifo_fd);
  int fd;
  do fd = open(path, O_WRONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(errno, "open exec fifo %s for writing", r->plan->exec_fifo);
  ssize_t n;
  do n = write(fd, "0", 1); while (n < 0 && errno == EINTR);
  if (n != 1) fail(n < 0 ? errno : EIO, "write to exec fifo %s", r->plan->exec_fifo);
  close(r->fifo_fd);
  r->fifo_fd = -1;
  report_start_fd(fd);
}

/* chdir, then make sure the directory is reachable from the root: a cwd that
 * resolves through a leaked fd to a host directory is refused (CVE-2024-21626). */
void enter_cwd(const struct plan *p) {
  const char *cwd = p->cwd ? p->cwd : "/";
  if (chdir(cwd) < 0) fail(errno, "chdir to cwd %s", cwd);
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) {
    if (errno == ENOENT) fail(ENOENT, "cwd %s resolves outside the container root", cwd);
    fail(errno, "getcwd in cwd %s", cwd);
  }
  if (buf[0] != '/') fail(ENOENT, "cwd %s resolves outside the container root", cwd);
}

/* Everything from 3 + preserve_fds up is closed on exec. */
void close_fds(const struct plan *p) {
  unsigned first = 3 + p->preserve_fds;
  if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  DIR *d = opendir("/proc/self/fd");
  if (!d) fail(errno, "list /proc/self/fd to close inherited fds");
  int self = dirfd(d);
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    if (fd >= (int)first && fd != self) fd_cloexec(fd, true);
  }
  closedir(d);
}

void exec_process(struct run *r) {
  execve(r->exe, r->plan->args.v, r->plan->env.v);
  fail(errno, "exec %s", r->exe);
}
