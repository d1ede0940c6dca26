/* The container's filesystem: rootfs propagation and self-bind, the plan's
 * mounts, devices and symlinks, pivot_root, then masked and read-only paths.
 *
 * Every target inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT)
 * and mounted onto /proc/self/fd/N of the resulting O_PATH fd, so a symlink
 * planted in the image (or swapped in while we work) can never send a mount
 * outside the rootfs (CVE-2021-30465). */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PROPAGATION (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)

/* Opens path (absolute, inside the container) relative to root without leaving it. */
static int resolve(int root, const char *path, int oflags) {
  struct open_how how = {
    .flags = (uint64_t)(oflags | O_CLOEXEC),
    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  int fd;
  do fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how); while (fd < 0 && errno == EAGAIN);
  return fd;
}

static void fd_path(char *buf, size_t len, int fd) { snprintf(buf, len, "/proc/self/fd/%d", fd); }

/* The host path of a container path, for messages. */
static char *shown(const struct run *r, const char *path) {
  return xasprintf("%s%s", r->plan->rootfs, strcmp(path, "/") ? path : "");
}

/* Splits "/a/b/c" into "/a/b" and "c" (both malloc'd). Fails for "/", "." and "..". */
static int split(const char *path, char **dir, char **base) {
  char *d = xstrdup(path);
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = '\0';
  char *slash = strrchr(d, '/');
  if (!slash || !slash[1] || !strcmp(slash + 1, ".") || !strcmp(slash + 1, "..")) {
    free(d);
    errno = EINVAL;
    return -1;
  }
  *base = xstrdup(slash + 1);
  if (slash == d) slash[1] = '\0';
  else *slash = '\0';
  *dir = d;
  return 0;
}

/* Creates path inside root (parents as directories, the last one as kind) without
 * ever leaving root. A dangling symlink on the way is followed inside root. */
static int mkdir_in_root(int root, const char *path, enum mkdir_kind kind, int depth) {
  if (depth > 40) { errno = ELOOP; return -1; }
  char *copy = xstrdup(path), *save = NULL;
  char *comps[PATH_MAX / 2];
  size_t n = 0;
  for (char *t = strtok_r(copy, "/", &save); t && n < sizeof comps / sizeof comps[0]; t = strtok_r(NULL, "/", &save))
    comps[n++] = t;
  char cur[PATH_MAX] = "", next[PATH_MAX];
  int ret = 0;
  for (size_t i = 0; i < n; i++) {
    if (snprintf(next, sizeof next, "%s/%s", cur, comps[i]) >= (int)sizeof next) { errno = ENAMETOOLONG; ret = -1; break; }
    int fd = resolve(root, next, O_PATH);
    if (fd >= 0) { close(fd); memcpy(cur, next, sizeof cur); continue; }
    if (errno != ENOENT) { ret = -1; break; }
    int pfd = resolve(root, cur[0] ? cur : "/", O_PATH | O_DIRECTORY);
    if (pfd < 0) { ret = -1; break; }
    int rc;
    if (i == n - 1 && kind == MKDIR_FILE) {
      rc = openat(pfd, comps[i], O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (rc >= 0) close(rc);
    } else {
      rc = mkdirat(pfd, comps[i], 0755);
    }
    if (rc < 0 && errno == EEXIST) {
      /* Not resolvable yet present: a dangling symlink. Create its target inside root. */
      char link[PATH_MAX];
      ssize_t ln = readlinkat(pfd, comps[i], link, sizeof link - 1);
      close(pfd);
      if (ln < 0) { errno = EEXIST; ret = -1; break; }
      link[ln] = '\0';
      char rest[PATH_MAX] = "";
      size_t used = 0;
      for (size_t k = i + 1; k < n; k++) used += (size_t)snprintf(rest + used, sizeof rest - used, "/%s", comps[k]);
      char *np = link[0] == '/' ? xasprintf("%s%s", link, rest) : xasprintf("%s/%s%s", cur, link, rest);
      ret = mkdir_in_root(root, np, kind, depth + 1);
      free(np);
      free(copy);
      return ret;
    }
    close(pfd);
    if (rc < 0) { ret = -1; break; }
    memcpy(cur, next, sizeof cur);
  }
  free(copy);
  return ret;
}

/* Mount flags that are locked on an existing mount (user namespaces refuse to clear them). */
static unsigned long locked_flags(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

/* remount MS_BIND with flags; on EPERM retry keeping the flags the kernel locked. */
static int bind_remount(const char *target, unsigned long flags) {
  unsigned long f = MS_REMOUNT | MS_BIND | (flags & ~(MS_REC | MS_BIND | PROPAGATION));
  if (mount(NULL, target, NULL, f, NULL) == 0) return 0;
  if (errno != EPERM) return -1;
  unsigned long locked = locked_flags(target) & ~MS_RDONLY;
  if (mount(NULL, target, NULL, f | locked, NULL) == 0) return 0;
  errno = EPERM;
  return -1;
}

/* Finds the mount point holding path; makes it private if it is shared, as pivot_root
 * and MS_MOVE refuse a shared parent. */
static void parent_mount_private(const char *path) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) fail(errno, "open /proc/self/mountinfo");
  char *line = NULL, best[PATH_MAX] = "";
  size_t cap = 0, bestlen = 0;
  bool shared = false;
  while (getline(&line, &cap, f) > 0) {
    char mp[PATH_MAX];
    int off = 0;
    if (sscanf(line, "%*s %*s %*s %*s %4095s %*s%n", mp, &off) < 1) continue;
    /* unescape \ooo */
    char *w = mp;
    for (char *s = mp; *s; s++) {
      if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
        *w++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
        s += 3;
      } else {
        *w++ = *s;
      }
    }
    *w = '\0';
    size_t l = strlen(mp);
    bool under = !strcmp(mp, "/") || (!strncmp(path, mp, l) && (path[l] == '/' || path[l] == '\0'));
    if (!under || l < bestlen) continue;
    memcpy(best, mp, l + 1);
    bestlen = l;
    char *dash = strstr(line + off, " - ");
    char *opt = strstr(line + off, " shared:");
    shared = opt && (!dash || opt < dash);
  }
  free(line);
  fclose(f);
  if (shared && mount(NULL, best, NULL, MS_PRIVATE, NULL) < 0)
    fail(errno, "make the mount %s holding the rootfs private", best);
}

void prepare_rootfs(struct run *r) {
  struct plan *p = r->plan;
  unsigned long prop = p->has_rootfs_propagation ? p->rootfs_propagation : MS_REC | MS_SLAVE;
  if (mount(NULL, "/", NULL, prop, NULL) < 0) fail(errno, "set the propagation of / to 0x%lx", prop);
  char real[PATH_MAX];
  if (!realpath(p->rootfs, real)) fail(errno, "resolve rootfs %s", p->rootfs);
  parent_mount_private(real);
  if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
    fail(errno, "bind rootfs %s onto itself", p->rootfs);
  r->root_fd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (r->root_fd < 0) fail(errno, "open rootfs %s", p->rootfs);
}

/* proc and sysfs only go on a real directory: the last component may not be a symlink. */
static int open_real_dir(struct run *r, const char *target, const char *where) {
  char *dir, *base;
  if (split(target, &dir, &base) < 0) fail(EINVAL, "mount target %s", where);
  int pfd = resolve(r->root_fd, dir, O_PATH | O_DIRECTORY);
  if (pfd < 0) fail(errno, "open the parent of mount target %s", where);
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "stat mount target %s", where);
  if (!S_ISDIR(st.st_mode))
    fail(ENOTDIR, "mount target %s must be a real directory (it is %s)", where,
         S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
  int fd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fail(errno, "open mount target %s", where);
  close(pfd);
  free(dir);
  free(base);
  return fd;
}

static void mount_one(struct run *r, const struct mount_rec *m) {
  char *where = shown(r, m->target);
  char what[PATH_MAX + 64];
  if (m->flags & MS_BIND) snprintf(what, sizeof what, "bind %s on %s", m->source, where);
  else if (!m->source[0] || !strcmp(m->source, m->fstype)) snprintf(what, sizeof what, "mount %s on %s", m->fstype, where);
  else snprintf(what, sizeof what, "mount %s %s on %s", m->fstype, m->source, where);

  if (m->mkdir != MKDIR_NONE && mkdir_in_root(r->root_fd, m->target, m->mkdir, 0) < 0)
    fail(errno, "%s: create the target", what);
  bool special = !strcmp(m->fstype, "proc") || !strcmp(m->fstype, "sysfs");
  int fd = special ? open_real_dir(r, m->target, where) : resolve(r->root_fd, m->target, O_PATH);
  if (fd < 0) fail(errno, "%s: open the target", what);
  char target[64];
  fd_path(target, sizeof target, fd);

  if (m->flags & MS_BIND) {
    if (mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0) fail(errno, "%s", what);
    if (m->flags & ~(MS_BIND | MS_REC | PROPAGATION)) {
      /* The fd points below the new mount: reopen to reach the mount itself. */
      close(fd);
      fd = resolve(r->root_fd, m->target, O_PATH);
      if (fd < 0) fail(errno, "%s: reopen the target", what);
      fd_path(target, sizeof target, fd);
      if (bind_remount(target, m->flags) < 0) fail(errno, "%s: remount with flags 0x%lx", what, m->flags);
    }
  } else {
    const char *data = m->data[0] ? m->data : NULL;
    if (mount(m->source, target, m->fstype, m->flags & ~PROPAGATION, data) < 0)
      fail(errno, "%s%s%s", what, data ? " with " : "", data ? data : "");
  }
  if (m->propagation) {
    close(fd);
    fd = resolve(r->root_fd, m->target, O_PATH);
    if (fd < 0) fail(errno, "%s: reopen the target", what);
    fd_path(target, sizeof target, fd);
    if (mount(NULL, target, NULL, m->propagation, NULL) < 0)
      fail(errno, "%s: set propagation 0x%lx", what, m->propagation);
  }
  close(fd);
  free(where);
}

void do_mounts(struct run *r) {
  for (size_t i = 0; i < r->plan->mounts.n; i++) mount_one(r, &r->plan->mounts.v[i]);
}

/* Opens the parent directory of path inside root (creating it), returning the last name. */
static int parent_in_root(struct run *r, const char *path, char **base, const char *where) {
  char *dir;
  if (split(path, &dir, base) < 0) fail(EINVAL, "%s: not a valid path", where);
  if (mkdir_in_root(r->root_fd, dir, MKDIR_DIR, 0) < 0) fail(errno, "create the parent directory of %s", where);
  int pfd = resolve(r->root_fd, dir, O_PATH | O_DIRECTORY);
  if (pfd < 0) fail(errno, "open the parent directory of %s", where);
  free(dir);
  return pfd;
}

static void make_device(struct run *r, const struct device_rec *d) {
  char *where = shown(r, d->path);
  char *base;
  int pfd = parent_in_root(r, d->path, &base, where);
  mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
  dev_t dev = d->type == 'p' ? 0 : makedev(d->major, d->minor);
  if (mknodat(pfd, base, type | d->mode, dev) < 0) {
    if (errno != EEXIST) fail(errno, "mknod %s (%c %u:%u)", where, d->type, d->major, d->minor);
    if (unlinkat(pfd, base, 0) < 0 || mknodat(pfd, base, type | d->mode, dev) < 0)
      fail(errno, "replace %s with a device node (%c %u:%u)", where, d->type, d->major, d->minor);
  }
  int fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fail(errno, "open device %s", where);
  if (fchownat(fd, "", d->uid, d->gid, AT_EMPTY_PATH) < 0) fail(errno, "chown device %s to %u:%u", where, d->uid, d->gid);
  char path[64];
  fd_path(path, sizeof path, fd);
  if (chmod(path, d->mode) < 0) fail(errno, "chmod device %s to %o", where, (unsigned)d->mode);
  close(fd);
  close(pfd);
  free(base);
  free(where);
}

static void bind_device(struct run *r, const char *path) {
  char *where = shown(r, path);
  if (mkdir_in_root(r->root_fd, path, MKDIR_FILE, 0) < 0) fail(errno, "create device bind target %s", where);
  int fd = resolve(r->root_fd, path, O_PATH);
  if (fd < 0) fail(errno, "open device bind target %s", where);
  char target[64];
  fd_path(target, sizeof target, fd);
  if (mount(path, target, NULL, MS_BIND, NULL) < 0) fail(errno, "bind device %s on %s", path, where);
  close(fd);
  free(where);
}

void make_devices(struct run *r) {
  for (size_t i = 0; i < r->plan->devices.n; i++) make_device(r, &r->plan->devices.v[i]);
  for (size_t i = 0; i < r->plan->device_binds.n; i++) bind_device(r, r->plan->device_binds.v[i]);
}

void make_symlinks(struct run *r) {
  for (size_t i = 0; i < r->plan->symlinks.n; i++) {
    const struct symlink_rec *s = &r->plan->symlinks.v[i];
    char *where = shown(r, s->linkpath), *base;
    int pfd = parent_in_root(r, s->linkpath, &base, where);
    if (symlinkat(s->target, pfd, base) < 0 && errno != EEXIST) fail(errno, "symlink %s -> %s", where, s->target);
    close(pfd);
    free(base);
    free(where);
  }
}

void pivot(struct run *r) {
  const char *rootfs = r->plan->rootfs;
  if (r->plan->no_pivot) {
    if (chdir(rootfs) < 0) fail(errno, "chdir %s", rootfs);
    if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0) fail(errno, "move rootfs %s to /", rootfs);
    if (chroot(".") < 0) fail(errno, "chroot %s", rootfs);
    if (chdir("/") < 0) fail(errno, "chdir / after chroot");
    return;
  }
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0) fail(errno, "open /");
  int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (newroot < 0) fail(errno, "open rootfs %s", rootfs);
  if (fchdir(newroot) < 0) fail(errno, "chdir %s", rootfs);
  /* Old root stacked under the new one, then detached: no directory needed in the image. */
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail(errno, "pivot_root to %s", rootfs);
  if (fchdir(oldroot) < 0) fail(errno, "chdir to the old root");
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) fail(errno, "make the old root a slave");
  if (umount2(".", MNT_DETACH) < 0) fail(errno, "detach the old root");
  if (chdir("/") < 0) fail(errno, "chdir /");
  close(oldroot);
  close(newroot);
}

void mask_paths(const struct plan *p) {
  for (size_t i = 0; i < p->masks.n; i++) {
    const char *path = p->masks.v[i];
    struct stat st;
    if (stat(path, &st) < 0) {
      if (errno == ENOENT) continue;
      fail(errno, "mask %s: stat", path);
    }
    if (S_ISDIR(st.st_mode)) {
      if (mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL) < 0) fail(errno, "mask %s with an empty read-only tmpfs", path);
    } else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
      fail(errno, "mask %s with /dev/null", path);
    }
  }
}

void readonly_paths(const struct plan *p) {
  for (size_t i = 0; i < p->readonly.n; i++) {
    const char *path = p->readonly.v[i];
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      fail(errno, "bind %s onto itself", path);
    }
    if (bind_remount(path, MS_RDONLY | locked_flags(path)) < 0) fail(errno, "remount %s read-only", path);
  }
  if (p->rootfs_readonly && bind_remount("/", MS_RDONLY | locked_flags("/")) < 0)
    fail(errno, "remount the rootfs read-only");
}

void set_sysctls(const struct plan *p) {
  for (size_t i = 0; i < p->sysctls.n; i++) {
    char *path = xasprintf("/proc/sys/%s", p->sysctls.v[i].key);
    for (char *c = path + 10; *c; c++)
      if (*c == '.') *c = '/';
    write_file(path, p->sysctls.v[i].value, strlen(p->sysctls.v[i].value), p->sysctls.v[i].key);
    free(path);
  }
}
