/* The project's error codes and messages. */
#include "lib/lib.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *const codes[] = {
#define AEP__ERR_STR(name, str) str,
    AEP_ERRORS(AEP__ERR_STR)
#undef AEP__ERR_STR
};

const char *aep_err_code(int err)
{
	if (err < 0 || err >= AEP_E__COUNT)
		return "Internal";
	return codes[err];
}

int aep_err_from_code(const char *code, size_t len)
{
	for (int i = 0; i < AEP_E__COUNT; i++) {
		if (strlen(codes[i]) == len && memcmp(codes[i], code, len) == 0)
			return i;
	}
	return AEP_EINTERNAL;
}

int aep_errorf(struct aep_error *e, int code, const char *fmt, ...)
{
	if (e == NULL)
		return code;
	va_list ap;
	va_start(ap, fmt);
	e->code = code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return code;
}

int aep_error_prefix(struct aep_error *e, const char *fmt, ...)
{
	if (e == NULL)
		return AEP_EINTERNAL;
	char prefix[AEP_ERRMSG_MAX];
	char old[AEP_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* Truncation is acceptable: the message is for people. */
	int n = snprintf(e->msg, sizeof(e->msg), "%s: ", prefix);
	if (n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, "%s", old);
	return e->code;
}

void aep_error_clear(struct aep_error *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

int aep_parse_uint(const char *s, const char *name, unsigned long long min, unsigned long long max,
		   unsigned long long *out, struct aep_error *e)
{
	unsigned long long v = 0;
	const char *p = s;
	if (s == NULL || *s == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > (ULLONG_MAX - 9) / 10)
			goto bad;
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	if (v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	return aep_errorf(e, AEP_EINVALID,
			  "%s: must be a whole number from %llu to %llu, not \"%s\"", name, min,
			  max, s ? s : "");
}

int aep_parse_duration(const char *s, const char *name, int64_t min_ms, int64_t max_ms,
		       int64_t *out_ms, struct aep_error *e)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	const char *p = s;
	double total = 0;
	if (s == NULL || *s == '\0')
		goto bad;
	while (*p != '\0') {
		double v = 0, scale = 1;
		bool digits = false, point = false;
		for (; (*p >= '0' && *p <= '9') || (*p == '.' && !point); p++) {
			if (*p == '.') {
				point = true;
				continue;
			}
			digits = true;
			if (point)
				v += (*p - '0') * (scale /= 10);
			else
				v = v * 10 + (*p - '0');
			if (v > 1e15)
				goto bad;
		}
		if (!digits)
			goto bad;
		if (*p == '\0') {
			if (p != s + strlen(s) || total != 0 || strpbrk(s, "smhd") != NULL)
				goto bad;
			total = v * 1000; /* a bare number, alone: seconds */
			break;
		}
		size_t i, n = 0;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			n = strlen(units[i].unit);
			/* "m" must not take the "m" of "ms". */
			if (strncmp(p, units[i].unit, n) == 0 &&
			    !(n == 1 && p[0] == 'm' && p[1] == 's'))
				break;
		}
		if (i == sizeof(units) / sizeof(units[0]))
			goto bad;
		total += v * (double)units[i].ms;
		p += n;
	}
	if (total < (double)min_ms || total > (double)max_ms)
		return aep_errorf(e, AEP_EINVALID, "%s \"%s\": must be from %lldms to %lldms", name,
				  s, (long long)min_ms, (long long)max_ms);
	*out_ms = (int64_t)total;
	return 0;
bad:
	return aep_errorf(e, AEP_EINVALID,
			  "%s \"%s\": not a duration (use e.g. 500ms, 40s, 5m, 1h30m, 7d)", name,
			  s ? s : "");
}
