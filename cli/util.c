/* Small helpers for reading objects the masters return: dotted paths into
 * msgpack maps, times and kubectl-style ages, and jansson -> msgpack. */
#include "cli/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const msgpack_object *cli__mp_path(const msgpack_object *o, const char *path)
{
	const char *p = path;
	while (o != NULL && *p != '\0') {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (o->type != MSGPACK_OBJECT_MAP)
			return NULL;
		const msgpack_object *next = NULL;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
			    memcmp(k->via.str.ptr, p, n) == 0) {
				next = &o->via.map.ptr[i].val;
				break;
			}
		}
		o = next;
		p += n;
		if (*p == '.')
			p++;
	}
	return o;
}

const char *cli__mp_str(const msgpack_object *o, const char *path, char *buf, size_t size,
			const char *dflt)
{
	const msgpack_object *v = cli__mp_path(o, path);
	if (v == NULL || size == 0)
		return dflt;
	switch (v->type) {
	case MSGPACK_OBJECT_STR: {
		size_t n = v->via.str.size < size - 1 ? v->via.str.size : size - 1;
		memcpy(buf, v->via.str.ptr, n);
		buf[n] = '\0';
		return buf;
	}
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, size, "%" PRIu64, v->via.u64);
		return buf;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, size, "%" PRId64, v->via.i64);
		return buf;
	case MSGPACK_OBJECT_BOOLEAN:
		snprintf(buf, size, "%s", v->via.boolean ? "true" : "false");
		return buf;
	default: return dflt;
	}
}

int64_t cli__mp_int(const msgpack_object *o, const char *path, int64_t dflt)
{
	const msgpack_object *v = cli__mp_path(o, path);
	if (v == NULL)
		return dflt;
	switch (v->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return v->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->via.u64;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return v->via.i64;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return (int64_t)v->via.f64;
	case MSGPACK_OBJECT_STR: {
		char buf[32];
		if (v->via.str.size == 0 || v->via.str.size >= sizeof(buf))
			return dflt;
		memcpy(buf, v->via.str.ptr, v->via.str.size);
		buf[v->via.str.size] = '\0';
		char *end;
		long long x = strtoll(buf, &end, 10);
		return *end == '\0' ? (int64_t)x : dflt;
	}
	default: return dflt;
	}
}

bool cli__mp_bool(const msgpack_object *o, const char *path, bool dflt)
{
	const msgpack_object *v = cli__mp_path(o, path);
	if (v == NULL || v->type != MSGPACK_OBJECT_BOOLEAN)
		return dflt;
	return v->via.boolean;
}

bool cli__parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return false;
	if (*end == '.') {
		end++;
		while (*end >= '0' && *end <= '9')
			end++;
	}
	if (*end != 'Z' || end[1] != '\0')
		return false;
	*out = (int64_t)timegm(&tm);
	return true;
}

void cli__format_age(const msgpack_object *obj, int64_t now_s, char *buf, size_t size)
{
	char ts[64];
	int64_t t;
	const char *s = cli__mp_str(obj, "metadata.creationTimestamp", ts, sizeof(ts), NULL);
	if (s == NULL || !cli__parse_time(s, &t)) {
		snprintf(buf, size, "<unknown>");
		return;
	}
	cli__format_duration(now_s - t, buf, size);
}

void cli__format_duration(int64_t d, char *buf, size_t size)
{
	if (d < 0)
		d = 0;
	/* kubectl's duration.HumanDuration */
	if (d < 120) {
		snprintf(buf, size, "%llds", (long long)d);
	} else if (d < 600) {
		if (d % 60)
			snprintf(buf, size, "%lldm%llds", (long long)(d / 60), (long long)(d % 60));
		else
			snprintf(buf, size, "%lldm", (long long)(d / 60));
	} else if (d < 3 * 3600) {
		snprintf(buf, size, "%lldm", (long long)(d / 60));
	} else if (d < 8 * 3600) {
		long long m = (d / 60) % 60;
		if (m)
			snprintf(buf, size, "%lldh%lldm", (long long)(d / 3600), m);
		else
			snprintf(buf, size, "%lldh", (long long)(d / 3600));
	} else if (d < 48 * 3600) {
		snprintf(buf, size, "%lldh", (long long)(d / 3600));
	} else if (d < 8 * 86400) {
		long long h = (d / 3600) % 24;
		if (h)
			snprintf(buf, size, "%lldd%lldh", (long long)(d / 86400), h);
		else
			snprintf(buf, size, "%lldd", (long long)(d / 86400));
	} else if (d < 2 * 365 * 86400LL) {
		snprintf(buf, size, "%lldd", (long long)(d / 86400));
	} else {
		snprintf(buf, size, "%lldy", (long long)(d / (365 * 86400LL)));
	}
}

void cli__json_pack(msgpack_packer *pk, const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach((json_t *)j, k, v)
		{
			aep_pack_str(pk, k);
			cli__json_pack(pk, v);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;
		msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, v) cli__json_pack(pk, v);
		break;
	}
	case JSON_STRING: aep_pack_strn(pk, json_string_value(j), json_string_length(j)); break;
	case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
	case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
	case JSON_TRUE: msgpack_pack_true(pk); break;
	case JSON_FALSE: msgpack_pack_false(pk); break;
	case JSON_NULL: msgpack_pack_nil(pk); break;
	}
}
