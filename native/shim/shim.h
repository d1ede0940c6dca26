/* berth-shim: one per container; see PROTOCOL.md. Shared types and the functions each file offers. */
#ifndef BERTH_SHIM_H
#define BERTH_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define PROTOCOL_VERSION 1
#define MAX_LINE (64 * 1024)

/* ---- util.c: growable buffers, time, files ---- */
struct buf {
	char *p;
	size_t len, cap;
};
void buf_add(struct buf *b, const void *data, size_t n);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_adds(struct buf *b, const char *s);
void buf_consume(struct buf *b, size_t n);
int buf_send(struct buf *b, int fd); /* non-blocking socket; 0 or -1 with errno */
void buf_free(struct buf *b);
void buf_json_str(struct buf *b, const char *s, size_t n); /* a quoted, escaped JSON string */

void fmt_time(const struct timespec *ts, char out[40]); /* RFC 3339, UTC, 9 fraction digits */
int write_atomic(const char *path, const char *data, size_t n);
int write_all(int fd, const void *data, size_t n);
char *xstrdup(const char *s);
void *xmalloc(size_t n);
void warnx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int set_nonblock(int fd, int on);

/* ---- json.c: flat request objects ---- */
#define JSON_MAX_FIELDS 24
struct jfield {
	char key[32];
	int type; /* 's' string, 'n' integer, 'b' boolean, 'z' null */
	char *str;
	long long num;
};
struct jobj {
	int n;
	struct jfield f[JSON_MAX_FIELDS];
};
int json_parse(const char *text, size_t n, struct jobj *o, const char **err);
void json_free(struct jobj *o);
const char *json_str(const struct jobj *o, const char *key); /* NULL if absent or not a string */
int json_has(const struct jobj *o, const char *key);
long long json_num(const struct jobj *o, const char *key, long long dflt);
int json_bool(const struct jobj *o, const char *key, int dflt);

/* ---- loop.c: the epoll loop ---- */
struct watch;
typedef void (*watch_fn)(struct watch *w, uint32_t events);
struct watch {
	int fd;
	watch_fn fn;
	void *ptr;
	uint32_t events; /* registered events, 0 if not registered */
};
int loop_init(void);
void loop_set(struct watch *w, uint32_t events); /* add, modify, or remove (events 0) */
void loop_run(void);
void loop_after_batch(void (*fn)(void));
void loop_defer_free(void *ptr, void (*fn)(void *));

/* ---- config (main.c) ---- */
struct config {
	const char *id, *ns, *bundle, *state_dir;
	const char *runtime, *runtime_root;
	const char **runtime_args;
	int n_runtime_args;
	const char *executor, *plan, *exec_fifo;
	int terminal, stdin_open;
	const char *stdin_fifo, *stdout_fifo, *stderr_fifo;
	const char *log_path;
	long long log_max_size;
	int log_max_files;
	const char *cgroup;
	int ready_fd;
};
extern struct config cfg;
void state_path(char *out, size_t n, const char *name);

/* ---- logging.c: Docker's json-file log ---- */
int jlog_open(const char *path, long long max_size, int max_files);
void jlog_write(const char *stream, const char *data, size_t n, const struct timespec *ts);

/* ---- io.c: a process's stdio ---- */
enum { ST_CREATING, ST_CREATED, ST_RUNNING, ST_STOPPED, ST_FAILED };
struct proc;

struct fifo_out {
	int fd;
	struct buf pend;
	struct watch w;
	int ended; /* close once pend is written */
};

struct stream {
	struct proc *p;
	int no; /* 1 stdout, 2 stderr */
	int fd; /* -1 once ended */
	struct watch w;
	struct buf partial; /* a log line without its newline yet */
	struct fifo_out *fifo;
};

struct proc {
	struct proc *next;
	char exec_id[80]; /* "" for the init process */
	int status;
	pid_t pid;
	int exit_code;
	struct timespec exited_at;
	char *error;
	int terminal, want_stdin;
	char *process_file, *plan_file; /* exec */
	char *stdin_fifo, *stdout_fifo, *stderr_fifo;
	/* stdio */
	struct stream out[2]; /* out[0] also carries the pty output */
	int master;           /* pty master, -1 without a terminal */
	int in_fd;            /* where stdin goes (pipe write end or a dup of the master), -1 when closed */
	struct watch in_w;
	struct buf in_pend;
	int in_closing;
	int sin_fd; /* stdin fifo */
	struct watch sin_w;
	int child_fds[3]; /* the process's ends, closed once it runs */
	int stdin_taken;  /* an attach client writes stdin */
};

extern struct proc *init_proc;
extern struct proc *procs;
struct proc *proc_find(const char *exec_id);
struct proc *proc_new(const char *exec_id);
void proc_free(struct proc *p);

int io_setup(struct proc *p, const char **err);   /* pipes (or /dev/null for a terminal) and fifos */
void io_started(struct proc *p);                     /* close the child's ends, start copying */
void io_take_master(struct proc *p, int master);
void io_drain(struct proc *p);                       /* read what the process has written so far */
int io_ended(const struct proc *p);                  /* all output streams at EOF */
int io_stdin_open(const struct proc *p);             /* stdin takes input (now, or once the pty comes) */
void io_stdin_write(struct proc *p, const char *data, size_t n);
void io_close_stdin(struct proc *p);
void io_close_all(struct proc *p);

/* ---- console.c: the console socket and the pty ---- */
int console_listen(void);             /* listening socket at <state>/console.sock */
int console_receive(int lfd, int timeout_ms, const char **err); /* the master fd */
void console_close(int lfd);
int console_resize(int master, unsigned rows, unsigned cols);

/* ---- runtime.c: the OCI runtime or the executor ---- */
int rt_create(struct proc *p, char *err, size_t errn);
int rt_start(struct proc *p, char *err, size_t errn);
int rt_exec(struct proc *p, char *err, size_t errn);
int rt_kill_all(int sig, char *err, size_t errn);
int rt_delete(int force, char *err, size_t errn);

/* ---- exit.c: reaping ---- */
int exit_init(void);                 /* signalfd for SIGCHLD, added to the loop */
void exit_pid_known(struct proc *p); /* after learning p->pid: it may already be reaped */
int exit_wait_pid(pid_t pid, int timeout_ms); /* reap one process now (delete) */
void exit_record(struct proc *p, int wstatus, const struct timespec *ts);

/* ---- ctrl.c: the control socket ---- */
int ctrl_listen(void);
void ctrl_event(const char *json_line); /* to every subscriber; line without '\n' */
void ctrl_proc_exited(struct proc *p);  /* answer waits, send the exit event */
void ctrl_flush_all(void);

/* ---- attach.c: the attach socket ---- */
int attach_listen(void);
int listen_unix(const char *path);
void attach_output(struct proc *p, int stream, const char *data, size_t n);
void attach_ended(struct proc *p);
void attach_flush_all(void);

/* ---- oom.c ---- */
void oom_watch(const char *cgroup_dir);

/* ---- main.c ---- */
void shim_shutdown(void) __attribute__((noreturn));

#endif
