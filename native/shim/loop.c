/* The single-threaded epoll loop every fd of the shim is served from. */
#include "shim.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static int epfd = -1;
static void (*after_batch)(void);

/* Objects holding a watch are freed only after the batch of events that may still name them. */
struct grave {
	void *ptr;
	void (*fn)(void *);
};
static struct grave graves[64];
static int n_graves;

static void bury_all(void)
{
	for (int i = 0; i < n_graves; i++)
		graves[i].fn(graves[i].ptr);
	n_graves = 0;
}

void loop_defer_free(void *ptr, void (*fn)(void *))
{
	if (n_graves == 64)
		bury_all(); /* only reached outside a batch in practice */
	graves[n_graves++] = (struct grave){ptr, fn};
}

int loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -1 : 0;
}

void loop_set(struct watch *w, uint32_t events)
{
	if (w->fd < 0 || w->events == events)
		return;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	int op = w->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(epfd, op, w->fd, &ev) < 0) {
		warnx_log("epoll_ctl fd %d: %m", w->fd);
		return;
	}
	w->events = events;
}

void loop_after_batch(void (*fn)(void))
{
	after_batch = fn;
}

void loop_run(void)
{
	struct epoll_event evs[32];
	for (;;) {
		int n = epoll_wait(epfd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			warnx_log("epoll_wait: %m");
			sleep(1);
			continue;
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;
			/* a watch removed earlier in this batch is not called */
			if (w->events == 0 || w->fd < 0)
				continue;
			w->fn(w, evs[i].events);
		}
		if (after_batch)
			after_batch();
		bury_all();
	}
}
