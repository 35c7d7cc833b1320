/* Printers: msgpack objects as YAML (libyaml's emitter, block style like
 * kubectl -o yaml) and JSON (jansson, 4-space indent like kubectl -o json).
 *
 * YAML strings that a YAML 1.1 or 1.2 reader would take for something else
 * (numbers, bools, null, timestamps, "yes") are double-quoted, so parsing the
 * output gives back the same msgpack; multi-line strings use the literal
 * block style. Binary values (bin, ext) are !!binary base64 in YAML and
 * base64 strings in JSON. Strings that are not valid UTF-8 are printed with
 * U+FFFD in place of the bad bytes. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

/* ---- base64 ----------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cli__base64_encode(const char *data, size_t len)
{
	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	const unsigned char *in = (const unsigned char *)data;
	char *out = aep_malloc((len + 2) / 3 * 4 + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int cli__base64_decode(const char *text, size_t len, char **out, size_t *out_len)
{
	char *buf = aep_malloc(len / 4 * 3 + 3);
	if (buf == NULL)
		return AEP_ENOMEM;
	size_t o = 0, pad = 0;
	uint32_t acc = 0;
	unsigned nbits = 0, nchars = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			nchars++;
			continue;
		}
		int v = b64_value(c);
		if (v < 0 || pad > 0)
			goto err_after_alloc;
		nchars++;
		acc = (acc << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			buf[o++] = (char)((acc >> nbits) & 0xff);
		}
	}
	if (nchars % 4 != 0 || pad > 2)
		goto err_after_alloc;
	*out = buf;
	*out_len = o;
	return 0;
err_after_alloc:
	aep_free(buf);
	return AEP_EINVALID;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at @s (at most @len bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* @s as valid UTF-8: NULL when it already is (use @s), else a heap copy
 * with U+FFFD for each bad byte; *@failed on ENOMEM. */
static char *utf8_fix(const char *s, size_t len, size_t *out_len, bool *failed)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	*failed = false;
	while (i < len) {
		size_t n = utf8_seq(u + i, len - i);
		if (n == 0)
			break;
		i += n;
	}
	if (i == len)
		return NULL;
	if (len > SIZE_MAX / 3 - 1) {
		*failed = true;
		return NULL;
	}
	char *out = aep_malloc(len * 3 + 1);
	if (out == NULL) {
		*failed = true;
		return NULL;
	}
	size_t o = 0;
	i = 0;
	while (i < len) {
		size_t n = utf8_seq(u + i, len - i);
		if (n == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

/* ---- floats ----------------------------------------------------------------- */

/* The shortest text that reads back as @f, always looking like a float. */
static void format_double(double f, char *buf, size_t size, bool json)
{
	if (isnan(f)) {
		snprintf(buf, size, json ? "null" : ".nan");
		return;
	}
	if (isinf(f)) {
		snprintf(buf, size, json ? "null" : f < 0 ? "-.inf" : ".inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, f);
		if (strtod(buf, NULL) == f)
			break;
	}
	if (strpbrk(buf, ".eEn") == NULL && strlen(buf) + 3 < size)
		strcat(buf, ".0");
}

/* ---- msgpack -> jansson ----------------------------------------------------- */

static json_t *json_str(const char *s, size_t len)
{
	size_t fixed_len;
	bool failed;
	char *fixed = utf8_fix(s, len, &fixed_len, &failed);
	if (failed)
		return NULL;
	json_t *j = fixed ? json_stringn(fixed, fixed_len) : json_stringn(s, len);
	aep_free(fixed);
	return j;
}

static char *key_text(const msgpack_object *k, size_t *len)
{
	char buf[64];
	switch (k->type) {
	case MSGPACK_OBJECT_STR:
		*len = k->via.str.size;
		return aep_strndup(k->via.str.ptr, k->via.str.size);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)k->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%lld", (long long)k->via.i64);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		snprintf(buf, sizeof(buf), k->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_NIL: snprintf(buf, sizeof(buf), "null"); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: format_double(k->via.f64, buf, sizeof(buf), false); break;
	default: snprintf(buf, sizeof(buf), "<%d>", (int)k->type); break;
	}
	*len = strlen(buf);
	return aep_strdup(buf);
}

json_t *cli__mp_to_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return json_null();
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			return json_null();
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR: return json_str(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT: {
		const char *p = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.ext.ptr;
		size_t n = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.ext.size;
		char *s = cli__base64_encode(p, n);
		if (s == NULL)
			return NULL;
		json_t *j = json_string(s);
		aep_free(s);
		return j;
	}
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		if (a == NULL)
			return NULL;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *v = cli__mp_to_json(&o->via.array.ptr[i]);
			if (v == NULL || json_array_append_new(a, v) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		if (m == NULL)
			return NULL;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			size_t klen;
			char *k = key_text(&o->via.map.ptr[i].key, &klen);
			json_t *v = k ? cli__mp_to_json(&o->via.map.ptr[i].val) : NULL;
			size_t fixed_len;
			bool failed = false;
			char *fixed = k ? utf8_fix(k, klen, &fixed_len, &failed) : NULL;
			int rv = -1;
			if (v != NULL && !failed)
				rv = json_object_setn_new(m, fixed ? fixed : k,
							  fixed ? fixed_len : klen, v);
			else
				json_decref(v);
			aep_free(fixed);
			aep_free(k);
			if (rv != 0) {
				json_decref(m);
				return NULL;
			}
		}
		return m;
	}
	}
	return json_null();
}

int aep_print_json(FILE *f, const msgpack_object *o)
{
	json_t *j = cli__mp_to_json(o);
	if (j == NULL)
		return AEP_ENOMEM;
	int rv = json_dumpf(j, f, JSON_INDENT(4) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(j);
	if (rv != 0)
		return AEP_EIO;
	fputc('\n', f);
	return ferror(f) ? AEP_EIO : 0;
}

/* ---- YAML ------------------------------------------------------------------- */

static int yaml_write(void *data, unsigned char *buf, size_t size)
{
	return fwrite(buf, 1, size, (FILE *)data) == size;
}

/* Would a YAML 1.1 or 1.2 reader resolve this plain scalar to something
 * other than a string? Errs on the side of quoting. */
static bool needs_quotes(const char *s, size_t len)
{
	static const char *const words[] = {
	    "~", "null", "true", "false", "yes", "no", "on", "off",
	    "y", "n",	 ".inf", ".nan",  "<<",	 "=",  NULL,
	};
	if (len == 0)
		return true;
	for (const char *const *w = words; *w != NULL; w++) {
		if (strlen(*w) == len && strncasecmp(*w, s, len) == 0)
			return true;
	}
	char c = s[0];
	if (c >= '0' && c <= '9')
		return true;
	if ((c == '-' || c == '+' || c == '.') && len > 1 &&
	    ((s[1] >= '0' && s[1] <= '9') || s[1] == '.' || s[1] == 'i' || s[1] == 'I'))
		return true;
	return false;
}

struct yout {
	yaml_emitter_t em;
	bool failed;
};

static void y_emit(struct yout *y, yaml_event_t *ev)
{
	if (y->failed) {
		yaml_event_delete(ev);
		return;
	}
	if (!yaml_emitter_emit(&y->em, ev))
		y->failed = true;
}

static void y_scalar(struct yout *y, const char *tag, const char *s, size_t len, bool implicit,
		     yaml_scalar_style_t style)
{
	yaml_event_t ev;
	size_t fixed_len;
	bool failed;
	char *fixed = utf8_fix(s, len, &fixed_len, &failed);
	if (failed) {
		y->failed = true;
		return;
	}
	if (!yaml_scalar_event_initialize(
		&ev, NULL, (yaml_char_t *)tag, (yaml_char_t *)(fixed ? fixed : s),
		(int)(fixed ? fixed_len : len), implicit, implicit, style))
		y->failed = true;
	else
		y_emit(y, &ev);
	aep_free(fixed);
}

static void y_string(struct yout *y, const char *s, size_t len)
{
	yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
	if (needs_quotes(s, len))
		style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	else if (memchr(s, '\n', len) != NULL)
		style = YAML_LITERAL_SCALAR_STYLE;
	y_scalar(y, NULL, s, len, true, style);
}

static void y_node(struct yout *y, const msgpack_object *o)
{
	char buf[64];
	yaml_event_t ev;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: y_scalar(y, NULL, "null", 4, true, YAML_PLAIN_SCALAR_STYLE); break;
	case MSGPACK_OBJECT_BOOLEAN:
		y_scalar(y, NULL, o->via.boolean ? "true" : "false", o->via.boolean ? 4 : 5, true,
			 YAML_PLAIN_SCALAR_STYLE);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)o->via.u64);
		y_scalar(y, NULL, buf, strlen(buf), true, YAML_PLAIN_SCALAR_STYLE);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%lld", (long long)o->via.i64);
		y_scalar(y, NULL, buf, strlen(buf), true, YAML_PLAIN_SCALAR_STYLE);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		format_double(o->via.f64, buf, sizeof(buf), false);
		y_scalar(y, NULL, buf, strlen(buf), true, YAML_PLAIN_SCALAR_STYLE);
		break;
	case MSGPACK_OBJECT_STR: y_string(y, o->via.str.ptr, o->via.str.size); break;
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT: {
		const char *p = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.ext.ptr;
		size_t n = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.ext.size;
		char *s = cli__base64_encode(p, n);
		if (s == NULL) {
			y->failed = true;
			break;
		}
		y_scalar(y, "tag:yaml.org,2002:binary", s, strlen(s), false,
			 YAML_PLAIN_SCALAR_STYLE);
		aep_free(s);
		break;
	}
	case MSGPACK_OBJECT_ARRAY:
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  YAML_BLOCK_SEQUENCE_STYLE)) {
			y->failed = true;
			break;
		}
		y_emit(y, &ev);
		for (uint32_t i = 0; i < o->via.array.size && !y->failed; i++)
			y_node(y, &o->via.array.ptr[i]);
		yaml_sequence_end_event_initialize(&ev);
		y_emit(y, &ev);
		break;
	case MSGPACK_OBJECT_MAP:
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 YAML_BLOCK_MAPPING_STYLE)) {
			y->failed = true;
			break;
		}
		y_emit(y, &ev);
		for (uint32_t i = 0; i < o->via.map.size && !y->failed; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type == MSGPACK_OBJECT_STR) {
				y_string(y, k->via.str.ptr, k->via.str.size);
			} else {
				size_t klen;
				char *kt = key_text(k, &klen);
				if (kt == NULL) {
					y->failed = true;
					break;
				}
				y_scalar(y, NULL, kt, klen, true, YAML_ANY_SCALAR_STYLE);
				aep_free(kt);
			}
			y_node(y, &o->via.map.ptr[i].val);
		}
		yaml_mapping_end_event_initialize(&ev);
		y_emit(y, &ev);
		break;
	}
}

int aep_print_yaml(FILE *f, const msgpack_object *o)
{
	struct yout y;
	yaml_event_t ev;
	memset(&y, 0, sizeof(y));
	if (!yaml_emitter_initialize(&y.em))
		return AEP_ENOMEM;
	yaml_emitter_set_output(&y.em, yaml_write, f);
	yaml_emitter_set_unicode(&y.em, 1);
	yaml_emitter_set_indent(&y.em, 2);
	yaml_emitter_set_width(&y.em, -1);
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	y_emit(&y, &ev);
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	y_emit(&y, &ev);
	y_node(&y, o);
	yaml_document_end_event_initialize(&ev, 1);
	y_emit(&y, &ev);
	yaml_stream_end_event_initialize(&ev);
	y_emit(&y, &ev);
	if (!y.failed && !yaml_emitter_flush(&y.em))
		y.failed = true;
	yaml_emitter_delete(&y.em);
	if (y.failed)
		return AEP_EIO;
	return ferror(f) ? AEP_EIO : 0;
}
