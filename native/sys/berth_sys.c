/*
 * berth_sys.node: the few system calls Node does not offer, for layer extraction
 * and diffing (packages/images/src/archive). Every function is synchronous, takes
 * paths as strings or Buffers (raw bytes, no NUL inside), and throws an Error whose
 * `code` is the errno name (ENOENT...), with `errno` and `syscall` set.
 *
 *   openat2(dirfd, path, flags, mode, resolve) -> fd
 *   mknodat(dirfd, path, mode, major, minor)
 *   lsetxattr(path, name, value: Buffer, flags)
 *   lgetxattr(path, name) -> Buffer | null          (null when the attribute is absent)
 *   llistxattr(path) -> string[]
 *   lremovexattr(path, name)
 *   constants: { O_PATH, O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, RESOLVE_*, AT_FDCWD, ... }
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#define MAX_ARGS 5

/* Throws an Error named after errno; always returns NULL for the caller to return. */
static napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *path)
{
	const char *name = strerrorname_np(err);
	char msg[512];
	if (path != NULL)
		snprintf(msg, sizeof msg, "%s %s: %s", syscall_name, path, strerror(err));
	else
		snprintf(msg, sizeof msg, "%s: %s", syscall_name, strerror(err));
	napi_value code, message, error, errnum, sc;
	napi_create_string_utf8(env, name != NULL ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
	napi_create_string_latin1(env, msg, NAPI_AUTO_LENGTH, &message);
	napi_create_error(env, code, message, &error);
	napi_create_int32(env, -err, &errnum);
	napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &sc);
	napi_set_named_property(env, error, "errno", errnum);
	napi_set_named_property(env, error, "syscall", sc);
	napi_set_named_property(env, error, "code", code);
	napi_throw(env, error);
	return NULL;
}

static napi_value throw_type(napi_env env, const char *msg)
{
	napi_throw_type_error(env, NULL, msg);
	return NULL;
}

/* Copies a string or Buffer argument into a fresh NUL-terminated string; NULL after throwing. */
static char *get_path(napi_env env, napi_value v, const char *what)
{
	bool is_buffer = false;
	napi_is_buffer(env, v, &is_buffer);
	if (is_buffer) {
		void *data;
		size_t len;
		if (napi_get_buffer_info(env, v, &data, &len) != napi_ok)
			return throw_type(env, what), NULL;
		if (memchr(data, 0, len) != NULL) {
			throw_type(env, "path contains a NUL byte");
			return NULL;
		}
		char *s = malloc(len + 1);
		if (s == NULL)
			return throw_errno(env, ENOMEM, "malloc", NULL), NULL;
		memcpy(s, data, len);
		s[len] = 0;
		return s;
	}
	size_t len;
	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
		throw_type(env, what);
		return NULL;
	}
	char *s = malloc(len + 1);
	if (s == NULL)
		return throw_errno(env, ENOMEM, "malloc", NULL), NULL;
	napi_get_value_string_utf8(env, v, s, len + 1, &len);
	if (strlen(s) != len) {
		free(s);
		throw_type(env, "path contains a NUL byte");
		return NULL;
	}
	return s;
}

/* argv[0] as a path and argv[1] as an xattr name, both owned by the caller;
 * false (with a pending JS exception) when either is not one. */
static bool get_path_and_name(napi_env env, napi_value *argv, char **path, char **name)
{
	*path = get_path(env, argv[0], "path must be a string or Buffer");
	if (*path == NULL)
		return false;
	*name = get_path(env, argv[1], "name must be a string");
	if (*name == NULL) {
		free(*path);
		return false;
	}
	return true;
}

static bool get_i64(napi_env env, napi_value v, int64_t *out, const char *what)
{
	if (napi_get_value_int64(env, v, out) != napi_ok) {
		throw_type(env, what);
		return false;
	}
	return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = MAX_ARGS;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < want) {
		throw_type(env, "missing arguments");
		return false;
	}
	return true;
}

static napi_value sys_openat2(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	int64_t dirfd, flags, mode, resolve;
	if (!get_args(env, info, 5, argv) || !get_i64(env, argv[0], &dirfd, "dirfd must be a number"))
		return NULL;
	if (!get_i64(env, argv[2], &flags, "flags must be a number") ||
	    !get_i64(env, argv[3], &mode, "mode must be a number") ||
	    !get_i64(env, argv[4], &resolve, "resolve must be a number"))
		return NULL;
	char *path = get_path(env, argv[1], "path must be a string or Buffer");
	if (path == NULL)
		return NULL;
	struct open_how how;
	memset(&how, 0, sizeof how);
	how.flags = (uint64_t)flags;
	how.mode = (uint64_t)mode;
	how.resolve = (uint64_t)resolve;
	long fd;
	do
		fd = syscall(SYS_openat2, (int)dirfd, path, &how, sizeof how);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int err = errno;
		napi_value r = throw_errno(env, err, "openat2", path);
		free(path);
		return r;
	}
	free(path);
	napi_value out;
	napi_create_int32(env, (int32_t)fd, &out);
	return out;
}

static napi_value sys_mknodat(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	int64_t dirfd, mode, major_n, minor_n;
	if (!get_args(env, info, 5, argv) || !get_i64(env, argv[0], &dirfd, "dirfd must be a number") ||
	    !get_i64(env, argv[2], &mode, "mode must be a number") ||
	    !get_i64(env, argv[3], &major_n, "major must be a number") ||
	    !get_i64(env, argv[4], &minor_n, "minor must be a number"))
		return NULL;
	if (major_n < 0 || minor_n < 0 || major_n > 0xffffffffLL || minor_n > 0xffffffffLL)
		return throw_errno(env, EINVAL, "mknodat", NULL);
	char *path = get_path(env, argv[1], "path must be a string or Buffer");
	if (path == NULL)
		return NULL;
	if (mknodat((int)dirfd, path, (mode_t)mode, makedev((unsigned)major_n, (unsigned)minor_n)) != 0) {
		int err = errno;
		throw_errno(env, err, "mknodat", path);
	}
	free(path);
	return NULL;
}

static napi_value sys_lsetxattr(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	int64_t flags;
	void *value;
	size_t value_len;
	bool is_buffer = false;
	if (!get_args(env, info, 4, argv) || !get_i64(env, argv[3], &flags, "flags must be a number"))
		return NULL;
	napi_is_buffer(env, argv[2], &is_buffer);
	if (!is_buffer || napi_get_buffer_info(env, argv[2], &value, &value_len) != napi_ok)
		return throw_type(env, "value must be a Buffer");
	char *path, *name;
	if (!get_path_and_name(env, argv, &path, &name))
		return NULL;
	if (lsetxattr(path, name, value_len > 0 ? value : "", value_len, (int)flags) != 0) {
		int err = errno;
		throw_errno(env, err, "lsetxattr", name);
	}
	free(name);
	free(path);
	return NULL;
}

static napi_value sys_lgetxattr(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	if (!get_args(env, info, 2, argv))
		return NULL;
	char *path, *name;
	if (!get_path_and_name(env, argv, &path, &name))
		return NULL;
	napi_value out = NULL;
	for (;;) {
		ssize_t n = lgetxattr(path, name, NULL, 0);
		if (n < 0) {
			int err = errno;
			if (err == ENODATA)
				napi_get_null(env, &out);
			else
				throw_errno(env, err, "lgetxattr", name);
			break;
		}
		void *data;
		napi_value buf;
		if (napi_create_buffer(env, (size_t)n, &data, &buf) != napi_ok)
			break;
		ssize_t m = n > 0 ? lgetxattr(path, name, data, (size_t)n) : 0;
		if (m < 0 && errno == ERANGE)
			continue; /* grew in between: ask again */
		if (m < 0) {
			int err = errno;
			if (err == ENODATA)
				napi_get_null(env, &out);
			else
				throw_errno(env, err, "lgetxattr", name);
			break;
		}
		if (m < n) {
			/* shrank in between: return the prefix that was filled */
			void *data2;
			napi_create_buffer_copy(env, (size_t)m, data, &data2, &buf);
		}
		out = buf;
		break;
	}
	free(name);
	free(path);
	return out;
}

static napi_value sys_llistxattr(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	if (!get_args(env, info, 1, argv))
		return NULL;
	char *path = get_path(env, argv[0], "path must be a string or Buffer");
	if (path == NULL)
		return NULL;
	napi_value out = NULL;
	for (;;) {
		ssize_t n = llistxattr(path, NULL, 0);
		if (n < 0) {
			throw_errno(env, errno, "llistxattr", path);
			break;
		}
		char *list = malloc((size_t)n + 1);
		if (list == NULL) {
			throw_errno(env, ENOMEM, "malloc", NULL);
			break;
		}
		ssize_t m = n > 0 ? llistxattr(path, list, (size_t)n) : 0;
		if (m < 0) {
			int err = errno;
			free(list);
			if (err == ERANGE)
				continue;
			throw_errno(env, err, "llistxattr", path);
			break;
		}
		napi_create_array(env, &out);
		uint32_t i = 0;
		for (ssize_t off = 0; off < m;) {
			size_t len = strnlen(list + off, (size_t)(m - off));
			napi_value s;
			napi_create_string_latin1(env, list + off, len, &s);
			napi_set_element(env, out, i++, s);
			off += (ssize_t)len + 1;
		}
		free(list);
		break;
	}
	free(path);
	return out;
}

static napi_value sys_lremovexattr(napi_env env, napi_callback_info info)
{
	napi_value argv[MAX_ARGS];
	if (!get_args(env, info, 2, argv))
		return NULL;
	char *path, *name;
	if (!get_path_and_name(env, argv, &path, &name))
		return NULL;
	if (lremovexattr(path, name) != 0) {
		int err = errno;
		throw_errno(env, err, "lremovexattr", name);
	}
	free(name);
	free(path);
	return NULL;
}

static void set_int(napi_env env, napi_value obj, const char *name, int64_t v)
{
	napi_value n;
	napi_create_int64(env, v, &n);
	napi_set_named_property(env, obj, name, n);
}

static void set_fn(napi_env env, napi_value obj, const char *name, napi_callback cb)
{
	napi_value fn;
	napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
	napi_set_named_property(env, obj, name, fn);
}

static napi_value init(napi_env env, napi_value exports)
{
	set_fn(env, exports, "openat2", sys_openat2);
	set_fn(env, exports, "mknodat", sys_mknodat);
	set_fn(env, exports, "lsetxattr", sys_lsetxattr);
	set_fn(env, exports, "lgetxattr", sys_lgetxattr);
	set_fn(env, exports, "llistxattr", sys_llistxattr);
	set_fn(env, exports, "lremovexattr", sys_lremovexattr);

	napi_value c;
	napi_create_object(env, &c);
	set_int(env, c, "AT_FDCWD", AT_FDCWD);
	set_int(env, c, "O_RDONLY", O_RDONLY);
	set_int(env, c, "O_PATH", O_PATH);
	set_int(env, c, "O_DIRECTORY", O_DIRECTORY);
	set_int(env, c, "O_NOFOLLOW", O_NOFOLLOW);
	set_int(env, c, "O_CLOEXEC", O_CLOEXEC);
	set_int(env, c, "RESOLVE_NO_XDEV", RESOLVE_NO_XDEV);
	set_int(env, c, "RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS);
	set_int(env, c, "RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS);
	set_int(env, c, "RESOLVE_BENEATH", RESOLVE_BENEATH);
	set_int(env, c, "RESOLVE_IN_ROOT", RESOLVE_IN_ROOT);
	set_int(env, c, "S_IFCHR", S_IFCHR);
	set_int(env, c, "S_IFBLK", S_IFBLK);
	set_int(env, c, "S_IFIFO", S_IFIFO);
	set_int(env, c, "XATTR_CREATE", XATTR_CREATE);
	set_int(env, c, "XATTR_REPLACE", XATTR_REPLACE);
	napi_set_named_property(env, exports, "constants", c);
	return exports;
}

NAPI_MODULE(berth_sys, init)
