/* Parses the flat JSON objects of the control and attach protocols:
 * string, integer, boolean and null values; nested values are refused. */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const char *s;
	size_t i, n;
	const char *err;
};

static void skip_ws(struct parser *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' || p->s[p->i] == '\n'))
		p->i++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int read_hex4(struct parser *p, unsigned *out)
{
	if (p->i + 4 > p->n)
		return -1;
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p->s[p->i + k]);
		if (h < 0)
			return -1;
		v = v * 16 + (unsigned)h;
	}
	p->i += 4;
	*out = v;
	return 0;
}

static void put_utf8(struct buf *b, unsigned cp)
{
	char t[4];
	if (cp < 0x80) {
		t[0] = (char)cp;
		buf_add(b, t, 1);
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | (cp >> 6));
		t[1] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, t, 2);
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | (cp >> 12));
		t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, t, 3);
	} else {
		t[0] = (char)(0xf0 | (cp >> 18));
		t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[3] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, t, 4);
	}
}

/* A string at p->i (on the opening quote); the result is NUL-terminated, NUL bytes refused. */
static char *parse_string(struct parser *p)
{
	struct buf b = {0};
	p->i++;
	while (p->i < p->n) {
		char c = p->s[p->i++];
		if (c == '"') {
			buf_add(&b, "", 1);
			return b.p;
		}
		if ((unsigned char)c < 0x20)
			break;
		if (c != '\\') {
			buf_add(&b, &c, 1);
			continue;
		}
		if (p->i >= p->n)
			break;
		char e = p->s[p->i++];
		unsigned cp;
		switch (e) {
		case '"': case '\\': case '/': buf_add(&b, &e, 1); break;
		case 'b': buf_add(&b, "\b", 1); break;
		case 'f': buf_add(&b, "\f", 1); break;
		case 'n': buf_add(&b, "\n", 1); break;
		case 'r': buf_add(&b, "\r", 1); break;
		case 't': buf_add(&b, "\t", 1); break;
		case 'u':
			if (read_hex4(p, &cp) < 0)
				goto bad;
			if (cp >= 0xd800 && cp <= 0xdbff && p->i + 6 <= p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
				unsigned lo;
				p->i += 2;
				if (read_hex4(p, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				goto bad;
			put_utf8(&b, cp);
			break;
		default:
			goto bad;
		}
	}
bad:
	buf_free(&b);
	p->err = "bad string";
	return NULL;
}

int json_parse(const char *text, size_t n, struct jobj *o, const char **err)
{
	struct parser p = {text, 0, n, NULL};
	memset(o, 0, sizeof *o);
	skip_ws(&p);
	if (p.i >= p.n || p.s[p.i] != '{') {
		*err = "expected a JSON object";
		return -1;
	}
	p.i++;
	skip_ws(&p);
	if (p.i < p.n && p.s[p.i] == '}') {
		p.i++;
		goto end;
	}
	for (;;) {
		skip_ws(&p);
		if (p.i >= p.n || p.s[p.i] != '"') {
			p.err = "expected a key";
			goto fail;
		}
		char *key = parse_string(&p);
		if (!key)
			goto fail;
		skip_ws(&p);
		if (p.i >= p.n || p.s[p.i] != ':') {
			free(key);
			p.err = "expected ':'";
			goto fail;
		}
		p.i++;
		skip_ws(&p);
		struct jfield f = {0};
		snprintf(f.key, sizeof f.key, "%s", key);
		int keep = strlen(key) < sizeof f.key;
		free(key);
		if (p.i >= p.n) {
			p.err = "expected a value";
			goto fail;
		}
		char c = p.s[p.i];
		if (c == '"') {
			f.type = 's';
			f.str = parse_string(&p);
			if (!f.str)
				goto fail;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			char *end;
			char tmp[32];
			size_t k = 0;
			while (p.i + k < p.n && k < sizeof tmp - 1 && strchr("-+0123456789.eE", p.s[p.i + k]))
				k++;
			memcpy(tmp, p.s + p.i, k);
			tmp[k] = 0;
			f.type = 'n';
			f.num = strtoll(tmp, &end, 10);
			if (end == tmp || *end) {
				p.err = "expected an integer";
				goto fail;
			}
			p.i += k;
		} else if (p.n - p.i >= 4 && !memcmp(p.s + p.i, "true", 4)) {
			f.type = 'b', f.num = 1, p.i += 4;
		} else if (p.n - p.i >= 5 && !memcmp(p.s + p.i, "false", 5)) {
			f.type = 'b', f.num = 0, p.i += 5;
		} else if (p.n - p.i >= 4 && !memcmp(p.s + p.i, "null", 4)) {
			f.type = 'z', p.i += 4;
		} else {
			p.err = "unsupported value (only strings, integers, booleans, null)";
			goto fail;
		}
		if (keep && o->n < JSON_MAX_FIELDS)
			o->f[o->n++] = f;
		else
			free(f.str);
		skip_ws(&p);
		if (p.i < p.n && p.s[p.i] == ',') {
			p.i++;
			continue;
		}
		if (p.i < p.n && p.s[p.i] == '}') {
			p.i++;
			break;
		}
		p.err = "expected ',' or '}'";
		goto fail;
	}
end:
	skip_ws(&p);
	if (p.i != p.n) {
		p.err = "trailing data after the object";
		goto fail;
	}
	return 0;
fail:
	json_free(o);
	*err = p.err ? p.err : "malformed JSON";
	return -1;
}

void json_free(struct jobj *o)
{
	for (int i = 0; i < o->n; i++)
		free(o->f[i].str);
	o->n = 0;
}

static const struct jfield *find(const struct jobj *o, const char *key)
{
	for (int i = o->n - 1; i >= 0; i--)
		if (!strcmp(o->f[i].key, key))
			return &o->f[i];
	return NULL;
}

const char *json_str(const struct jobj *o, const char *key)
{
	const struct jfield *f = find(o, key);
	return f && f->type == 's' ? f->str : NULL;
}

int json_has(const struct jobj *o, const char *key)
{
	const struct jfield *f = find(o, key);
	return f && f->type != 'z';
}

long long json_num(const struct jobj *o, const char *key, long long dflt)
{
	const struct jfield *f = find(o, key);
	return f && f->type == 'n' ? f->num : dflt;
}

int json_bool(const struct jobj *o, const char *key, int dflt)
{
	const struct jfield *f = find(o, key);
	return f && f->type == 'b' ? (int)f->num : dflt;
}
