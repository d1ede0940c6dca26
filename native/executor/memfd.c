/* Re-executes the executor from a sealed memfd copy of its binary, so that a
 * container process can never reach (and overwrite) the binary on disk
 * through /proc/<pid>/exe (CVE-2019-5736). The plan and sync fds are
 * inherited without close-on-exec, so they survive the re-exec. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

extern char **environ;

void memfd_reexec(char **argv) {
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0) fail(errno, "open /proc/self/exe");
  /* Only memfds carry seals: a sealed self is the copy already. */
  int seals = fcntl(self, F_GET_SEALS);
  if (seals >= 0 && (seals & F_SEAL_WRITE)) {
    close(self);
    return;
  }
  struct stat st;
  if (fstat(self, &st) < 0) fail(errno, "stat /proc/self/exe");
  int mfd = memfd_create("berth-executor", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (mfd < 0 && errno == EINVAL) mfd = memfd_create("berth-executor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) fail(errno, "memfd_create berth-executor");
  off_t left = st.st_size;
  while (left > 0) {
    ssize_t n = sendfile(mfd, self, NULL, (size_t)left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, "copy /proc/self/exe to a memfd");
    if (n == 0) fail(EIO, "copy /proc/self/exe to a memfd: unexpected end of file");
    left -= n;
  }
  close(self);
  if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
    fail(errno, "seal the executor memfd");
  fexecve(mfd, argv, environ);
  fail(errno, "re-execute from the executor memfd");
}
