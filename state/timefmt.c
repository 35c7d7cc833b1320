/* state: RFC 3339 timestamps <-> Unix nanoseconds, without the C library's
 * time zone machinery (apply must not depend on the host's TZ). Civil-date
 * arithmetic is Howard Hinnant's days_from_civil / civil_from_days. */
#include "state/schema.h"

#include <string.h>

#define NS_PER_SEC   1000000000LL
#define SECS_PER_DAY 86400LL

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = floor_div(y, 400);
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = floor_div(z, 146097);
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Write @v as @n decimal digits, zero-padded, at @p. */
static char *put_digits(char *p, unsigned long v, unsigned n)
{
	for (unsigned i = n; i > 0; i--) {
		p[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + n;
}

void aep_time_format(int64_t ns, char *buf, size_t size)
{
	int64_t secs = floor_div(ns, NS_PER_SEC);
	long frac = (long)(ns % NS_PER_SEC);
	if (frac < 0)
		frac += NS_PER_SEC;
	int64_t days = floor_div(secs, SECS_PER_DAY);
	long sod = (long)(secs - days * SECS_PER_DAY);
	int64_t y;
	unsigned m, d;
	char out[32], *p = out;

	/* int64 ns keeps the year within 1677..2262: always four digits. */
	civil_from_days(days, &y, &m, &d);
	p = put_digits(p, (unsigned long)y, 4);
	*p++ = '-';
	p = put_digits(p, m, 2);
	*p++ = '-';
	p = put_digits(p, d, 2);
	*p++ = 'T';
	p = put_digits(p, (unsigned long)(sod / 3600), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned long)(sod / 60 % 60), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned long)(sod % 60), 2);
	if (frac != 0) {
		unsigned n = 9;
		while (frac % 10 == 0) {
			frac /= 10;
			n--;
		}
		*p++ = '.';
		p = put_digits(p, (unsigned long)frac, n);
	}
	*p++ = 'Z';
	*p = '\0';
	if (size > 0) {
		size_t n = (size_t)(p - out) < size - 1 ? (size_t)(p - out) : size - 1;
		memcpy(buf, out, n);
		buf[n] = '\0';
	}
}

/* Read exactly @n digits at *@p. */
static bool digits(const char **p, const char *end, unsigned n, unsigned *v)
{
	*v = 0;
	if ((size_t)(end - *p) < n)
		return false;
	for (unsigned i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		*v = *v * 10 + (unsigned)(c - '0');
	}
	*p += n;
	return true;
}

static bool expect(const char **p, const char *end, char c)
{
	if (*p == end || **p != c)
		return false;
	(*p)++;
	return true;
}

int aep_time_parse(const char *s, size_t len, int64_t *ns)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s, *end = s + len;
	unsigned y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0;
	int sign = 0;

	if (!digits(&p, end, 4, &y) || !expect(&p, end, '-') || !digits(&p, end, 2, &mo) ||
	    !expect(&p, end, '-') || !digits(&p, end, 2, &d))
		return AEP_EINVALID;
	if (p == end || (*p != 'T' && *p != 't' && *p != ' '))
		return AEP_EINVALID;
	p++;
	if (!digits(&p, end, 2, &h) || !expect(&p, end, ':') || !digits(&p, end, 2, &mi) ||
	    !expect(&p, end, ':') || !digits(&p, end, 2, &sec))
		return AEP_EINVALID;
	if (p < end && *p == '.') {
		unsigned n = 0;
		p++;
		while (p < end && *p >= '0' && *p <= '9') {
			if (n == 9)
				return AEP_EINVALID;
			frac = frac * 10 + (unsigned)(*p++ - '0');
			n++;
		}
		if (n == 0)
			return AEP_EINVALID;
		for (; n < 9; n++)
			frac *= 10;
	}
	if (p < end && (*p == 'Z' || *p == 'z')) {
		p++;
	} else if (p < end && (*p == '+' || *p == '-')) {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, end, 2, &oh) || !expect(&p, end, ':') || !digits(&p, end, 2, &om) ||
		    oh > 23 || om > 59)
			return AEP_EINVALID;
	} else {
		return AEP_EINVALID;
	}
	if (p != end)
		return AEP_EINVALID;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 59)
		return AEP_EINVALID;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return AEP_EINVALID;

	int64_t secs = days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + sec -
		       sign * (int64_t)(oh * 3600 + om * 60);
	/* int64 ns spans 1677-09-21T00:12:43.145224192Z .. 2262-04-11T23:47:16.854775807Z;
	 * a negative second with a fraction is (secs + 1) s minus the rest. */
	bool borrow = secs < 0 && frac > 0;
	int64_t base, rest = borrow ? (int64_t)frac - NS_PER_SEC : (int64_t)frac;
	if (__builtin_mul_overflow(secs + borrow, NS_PER_SEC, &base) ||
	    __builtin_add_overflow(base, rest, &base))
		return AEP_EINVALID;
	*ns = base;
	return 0;
}
