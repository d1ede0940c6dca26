/* OOM kills in the container's cgroup: v2 memory.events (inotify), v1 an eventfd
 * on memory.oom_control through cgroup.event_control. */
#include "shim.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

static struct watch oom_w = {.fd = -1};
static char events_path[4096];
static long long last_kills;

/* The oom_kill count of memory.events (v2); -1 when it has none. */
static long long v2_oom_kills(void)
{
	FILE *f = fopen(events_path, "re");
	if (!f)
		return -1;
	char key[64];
	long long v, kills = -1; /* -1: no counter */
	while (fscanf(f, "%63s %lld", key, &v) == 2)
		if (!strcmp(key, "oom_kill"))
			kills = v;
	fclose(f);
	return kills;
}

static void on_v2(struct watch *w, uint32_t ev)
{
	(void)ev;
	char b[4096];
	while (read(w->fd, b, sizeof b) > 0)
		;
	long long k = v2_oom_kills();
	if (k > last_kills) {
		last_kills = k;
		ctrl_event("{\"event\":\"oom\"}");
	}
}

static void on_v1(struct watch *w, uint32_t ev)
{
	(void)ev;
	uint64_t n;
	if (read(w->fd, &n, sizeof n) != sizeof n)
		return;
	/* the eventfd also fires when the cgroup goes away; the counter may not have
	 * moved yet when it fires for an OOM, so only the file's presence is trusted */
	if (access(events_path, R_OK) < 0)
		return;
	ctrl_event("{\"event\":\"oom\"}");
}

void oom_watch(const char *dir)
{
	snprintf(events_path, sizeof events_path, "%s/memory.events", dir);
	if (access(events_path, R_OK) == 0) {
		int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fd < 0 || inotify_add_watch(fd, events_path, IN_MODIFY) < 0) {
			warnx_log("watch %s: %m", events_path);
			if (fd >= 0)
				close(fd);
			return;
		}
		last_kills = v2_oom_kills();
		oom_w = (struct watch){.fd = fd, .fn = on_v2};
		loop_set(&oom_w, EPOLLIN);
		return;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/memory.oom_control", dir);
	snprintf(events_path, sizeof events_path, "%s", path);
	int ofd = open(path, O_RDONLY | O_CLOEXEC);
	if (ofd < 0) {
		warnx_log("no memory.events or memory.oom_control in %s: OOM kills are not reported", dir);
		return;
	}
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	snprintf(path, sizeof path, "%s/cgroup.event_control", dir);
	int cfd = open(path, O_WRONLY | O_CLOEXEC);
	char line[64];
	int n = snprintf(line, sizeof line, "%d %d", efd, ofd);
	if (efd < 0 || cfd < 0 || write(cfd, line, (size_t)n) != n) {
		warnx_log("register an OOM eventfd in %s: %m", dir);
		if (efd >= 0)
			close(efd);
		if (cfd >= 0)
			close(cfd);
		close(ofd);
		return;
	}
	close(cfd);
	/* ofd stays open: the registration lives as long as the eventfd */
	oom_w = (struct watch){.fd = efd, .fn = on_v1};
	loop_set(&oom_w, EPOLLIN);
}
