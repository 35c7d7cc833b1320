/* state: syntax rules for names, labels, ports, addresses and quantities.
 * Messages follow Kubernetes' wording and carry no field path: the caller
 * (object.c, the CLI) says which field it was. */
#include "state/schema.h"

#include <arpa/inet.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

const char *state__quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t cut = size - 6; /* quotes, "...", NUL */
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < len && i < cut; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (len > cut) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

#define LABEL_MSG                                                                           \
	"a lowercase RFC 1123 label must consist of lower case alphanumeric characters or " \
	"'-', and must start and end with an alphanumeric character"
#define SUBDOMAIN_MSG                                                                         \
	"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, " \
	"'-' or '.', and must start and end with an alphanumeric character"

bool state__utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, past U+10FFFF */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

/* One dot-free part of a DNS name: lower-case alnum and '-', alnum ends. */
static bool dns_label_ok(const char *s, size_t len)
{
	if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

int aep_validate_dns1123_label(const char *s, size_t len, struct aep_error *e)
{
	if (len == 0)
		return aep_errorf(e, AEP_EINVALID, "must not be empty");
	if (len > AEP_LABEL_NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "must be no more than %d characters",
				  AEP_LABEL_NAME_MAX);
	if (!dns_label_ok(s, len))
		return aep_errorf(e, AEP_EINVALID, LABEL_MSG);
	return 0;
}

static bool subdomain_ok(const char *s, size_t len)
{
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (!dns_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

int aep_validate_dns1123_subdomain(const char *s, size_t len, struct aep_error *e)
{
	if (len == 0)
		return aep_errorf(e, AEP_EINVALID, "must not be empty");
	if (len > AEP_NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "must be no more than %d characters",
				  AEP_NAME_MAX);
	if (!subdomain_ok(s, len))
		return aep_errorf(e, AEP_EINVALID, SUBDOMAIN_MSG);
	return 0;
}

/* Label names and values: alnum, '-', '_', '.', with alnum ends. */
static bool label_chars_ok(const char *s, size_t len)
{
	if (!is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

int aep_validate_label_key(const char *s, size_t len, struct aep_error *e)
{
	const char *slash = len > 0 ? memchr(s, '/', len) : NULL;
	const char *name = s;
	size_t name_len = len;

	if (slash != NULL) {
		size_t plen = (size_t)(slash - s);
		name = slash + 1;
		name_len = len - plen - 1;
		if (memchr(name, '/', name_len) != NULL)
			return aep_errorf(e, AEP_EINVALID,
					  "a qualified name must have at most one '/' (an optional "
					  "DNS subdomain prefix and a name)");
		if (plen == 0)
			return aep_errorf(e, AEP_EINVALID, "prefix part must not be empty");
		if (plen > AEP_NAME_MAX)
			return aep_errorf(e, AEP_EINVALID,
					  "prefix part must be no more than %d characters",
					  AEP_NAME_MAX);
		if (!subdomain_ok(s, plen))
			return aep_errorf(e, AEP_EINVALID, "prefix part " SUBDOMAIN_MSG);
	}
	if (name_len == 0)
		return aep_errorf(e, AEP_EINVALID, "name part must not be empty");
	if (name_len > AEP_LABEL_NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "name part must be no more than %d characters",
				  AEP_LABEL_NAME_MAX);
	if (!label_chars_ok(name, name_len))
		return aep_errorf(e, AEP_EINVALID,
				  "name part must consist of alphanumeric characters, '-', '_' or "
				  "'.', and must start and end with an alphanumeric character");
	return 0;
}

int aep_validate_label_value(const char *s, size_t len, struct aep_error *e)
{
	if (len == 0)
		return 0;
	if (len > AEP_LABEL_NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "must be no more than %d characters",
				  AEP_LABEL_NAME_MAX);
	if (!label_chars_ok(s, len))
		return aep_errorf(
		    e, AEP_EINVALID,
		    "a valid label must be an empty string or consist of alphanumeric "
		    "characters, '-', '_' or '.', and must start and end with an "
		    "alphanumeric character");
	return 0;
}

/* IANA service name: at most 15 of [a-z0-9-], at least one letter, no
 * '-' at the ends, no "--". */
int state__validate_port_name(const char *s, size_t len, struct aep_error *e)
{
	bool letter = false;
	if (len == 0 || len > 15)
		return aep_errorf(e, AEP_EINVALID, "must be no more than 15 characters");
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = true;
		else if (!is_digit(s[i]) && s[i] != '-')
			return aep_errorf(e, AEP_EINVALID,
					  "must contain only alpha-numeric characters (a-z, 0-9), "
					  "and hyphens (-)");
	}
	if (s[0] == '-' || s[len - 1] == '-')
		return aep_errorf(e, AEP_EINVALID, "must not begin or end with a hyphen");
	if (memmem(s, len, "--", 2) != NULL)
		return aep_errorf(e, AEP_EINVALID, "must not contain consecutive hyphens");
	if (!letter)
		return aep_errorf(e, AEP_EINVALID, "must contain at least one letter (a-z)");
	return 0;
}

int state__validate_env_name(const char *s, size_t len, struct aep_error *e)
{
	bool ok = len > 0 && !is_digit(s[0]);
	for (size_t i = 0; ok && i < len; i++)
		ok = is_alnum(s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.';
	if (!ok)
		return aep_errorf(e, AEP_EINVALID,
				  "a valid environment variable name must consist of alphabetic "
				  "characters, digits, '_', '-', or '.', and must not start with a "
				  "digit");
	return 0;
}

/* Parse an IPv4 or IPv6 address; @bits gets its width. */
static bool ip_parse(const char *s, size_t len, unsigned *bits)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char addr[16];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*bits = 32;
		return true;
	}
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		*bits = 128;
		return true;
	}
	return false;
}

int state__validate_ip(const char *s, size_t len, struct aep_error *e)
{
	unsigned bits;
	if (!ip_parse(s, len, &bits))
		return aep_errorf(e, AEP_EINVALID, "must be a valid IP address");
	return 0;
}

int state__validate_cluster_ip(const char *s, size_t len, struct aep_error *e)
{
	unsigned bits;
	if ((len == 4 && memcmp(s, "None", 4) == 0) || ip_parse(s, len, &bits))
		return 0;
	return aep_errorf(e, AEP_EINVALID, "must be a valid IP address or \"None\"");
}

int state__validate_cidr(const char *s, size_t len, struct aep_error *e)
{
	const char *slash = memchr(s, '/', len);
	unsigned bits, prefix = 0;
	size_t i;

	if (slash == NULL || !ip_parse(s, (size_t)(slash - s), &bits))
		goto bad;
	i = (size_t)(slash - s) + 1;
	if (i == len || len - i > 3)
		goto bad;
	for (; i < len; i++) {
		if (!is_digit(s[i]))
			goto bad;
		prefix = prefix * 10 + (unsigned)(s[i] - '0');
	}
	if (prefix > bits)
		goto bad;
	return 0;
bad:
	return aep_errorf(e, AEP_EINVALID, "must be a valid CIDR (e.g. 10.1.0.0/24)");
}

/* Kubernetes' quantity: a non-negative decimal number, then a binary-SI
 * suffix (Ki..Ei), a decimal-SI suffix (n, u, m, k, M..E) or an exponent
 * (e3, E-2). */
int state__validate_quantity(const char *s, size_t len, struct aep_error *e)
{
	size_t i = 0, digits = 0;
	if (len == 0 || len > 64)
		goto bad;
	if (s[i] == '+')
		i++;
	while (i < len && is_digit(s[i])) {
		i++;
		digits++;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && is_digit(s[i])) {
			i++;
			digits++;
		}
	}
	if (digits == 0)
		goto bad;
	if (i == len)
		return 0;
	size_t rest = len - i;
	const char *suf = s + i;
	if (rest == 2 && suf[1] == 'i' && suf[0] != '\0' && strchr("KMGTPE", suf[0]) != NULL)
		return 0;
	if (rest == 1 && suf[0] != '\0' && strchr("numkMGTPE", suf[0]) != NULL)
		return 0;
	if (suf[0] == 'e' || suf[0] == 'E') {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i == len)
			goto bad;
		while (i < len && is_digit(s[i]))
			i++;
		if (i == len)
			return 0;
	}
bad:
	return aep_errorf(e, AEP_EINVALID,
			  "quantities must be non-negative and match the regular expression "
			  "'^([+]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
}

/* Scale a decimal mantissa (@digits as an integer, @frac digits after the
 * point) by 10^@exp10 * 2^@exp2 and by 1000 (milli-units), rounding up as
 * Kubernetes does for fractions of a milli-unit. */
static int quantity_scale(uint64_t digits, int frac, int exp10, int exp2, int64_t *out)
{
	unsigned __int128 v = digits;
	int e10 = exp10 + 3 - frac;
	unsigned __int128 limit = (unsigned __int128)INT64_MAX;

	for (; exp2 > 0; exp2--) {
		v <<= 1;
		if (v > limit)
			return AEP_EINVALID;
	}
	for (; e10 > 0; e10--) {
		v *= 10;
		if (v > limit)
			return AEP_EINVALID;
	}
	for (; e10 < 0; e10++) {
		unsigned __int128 q = v / 10;
		v = q + (v % 10 != 0 ? 1 : 0);
	}
	*out = (int64_t)v;
	return 0;
}

int aep_quantity_parse(const char *s, size_t len, int64_t *milli, struct aep_error *e)
{
	uint64_t digits = 0;
	int frac = 0, exp10 = 0, exp2 = 0;
	size_t i = 0;
	bool point = false;

	if (state__validate_quantity(s, len, e) != 0)
		return AEP_EINVALID;
	if (s[i] == '+')
		i++;
	for (; i < len && (is_digit(s[i]) || s[i] == '.'); i++) {
		if (s[i] == '.') {
			point = true;
			continue;
		}
		if (digits > (UINT64_MAX - 9) / 10) /* beyond any representable amount */
			goto range;
		digits = digits * 10 + (uint64_t)(s[i] - '0');
		if (point)
			frac++;
	}
	if (i < len) {
		const char *suf = s + i;
		size_t rest = len - i;
		static const char bin[] = "KMGTPE", dec[] = "kMGTPE";
		if (rest == 2 && suf[1] == 'i') {
			exp2 = 10 * (int)(strchr(bin, suf[0]) - bin + 1);
		} else if (rest == 1 && strchr("num", suf[0]) != NULL) {
			exp10 = suf[0] == 'n' ? -9 : suf[0] == 'u' ? -6 : -3;
		} else if (rest == 1) {
			exp10 = 3 * (int)(strchr(dec, suf[0]) - dec + 1);
		} else {
			size_t j = 1;
			int sign = 1, x = 0;
			if (suf[j] == '+' || suf[j] == '-')
				sign = suf[j++] == '-' ? -1 : 1;
			for (; j < rest; j++) {
				x = x * 10 + (suf[j] - '0');
				if (x > 30)
					goto range;
			}
			exp10 = sign * x;
		}
	}
	if (quantity_scale(digits, frac, exp10, exp2, milli) != 0)
		goto range;
	return 0;
range:
	return aep_errorf(e, AEP_EINVALID, "quantity \"%.*s\" is out of range", (int)len, s);
}

/* Does @labels (a valid label map) hold every pair of @sel? */
static bool map_subset(const msgpack_object *sel, const msgpack_object *labels)
{
	for (uint32_t i = 0; i < sel->via.map.size; i++) {
		const msgpack_object *k = &sel->via.map.ptr[i].key;
		const msgpack_object *v = &sel->via.map.ptr[i].val;
		bool found = false;
		for (uint32_t j = 0; labels != NULL && j < labels->via.map.size && !found; j++) {
			const msgpack_object *lk = &labels->via.map.ptr[j].key;
			const msgpack_object *lv = &labels->via.map.ptr[j].val;
			found = lk->via.str.size == k->via.str.size &&
				memcmp(lk->via.str.ptr, k->via.str.ptr, k->via.str.size) == 0 &&
				lv->via.str.size == v->via.str.size &&
				memcmp(lv->via.str.ptr, v->via.str.ptr, v->via.str.size) == 0;
		}
		if (!found)
			return false;
	}
	return true;
}

int state__check_rc(const msgpack_object *obj, struct aep_error *e)
{
	const msgpack_object *spec = aep_mp_map_get(obj, "spec");
	const msgpack_object *sel = aep_mp_map_get(spec, "selector");
	const msgpack_object *tmpl = aep_mp_map_get(spec, "template");
	const msgpack_object *labels = aep_mp_map_get(aep_mp_map_get(tmpl, "metadata"), "labels");

	const msgpack_object *policy =
	    aep_mp_map_get(aep_mp_map_get(tmpl, "spec"), "restartPolicy");

	/* A controller replaces pods that end; one whose pods are meant to
	 * end would run them again and again. */
	if (policy != NULL && !aep_mp_str_eq(policy, "Always"))
		return aep_errorf(e, AEP_EINVALID,
				  "spec.template.spec.restartPolicy: Unsupported value: \"%.*s\": "
				  "supported values: \"Always\"",
				  policy->type == MSGPACK_OBJECT_STR ? (int)policy->via.str.size
								     : 0,
				  policy->type == MSGPACK_OBJECT_STR ? policy->via.str.ptr : "");
	if (sel == NULL || sel->type != MSGPACK_OBJECT_MAP || sel->via.map.size == 0)
		return 0;
	if (labels != NULL && labels->type != MSGPACK_OBJECT_MAP)
		labels = NULL;
	if (!map_subset(sel, labels))
		return aep_errorf(e, AEP_EINVALID,
				  "spec.template.metadata.labels: selector does not match "
				  "template labels");
	return 0;
}
