/* Growable byte buffers, also used as msgpack-c packer targets. */
#include "lib/lib.h"

#include <stdio.h>
#include <string.h>

void aep_buf_init(struct aep_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void aep_buf_free(struct aep_buf *b)
{
	aep_free(b->data);
	aep_buf_init(b);
}

void aep_buf_reset(struct aep_buf *b)
{
	b->len = 0;
	b->failed = false;
}

int aep_buf_reserve(struct aep_buf *b, size_t extra)
{
	if (extra > SIZE_MAX / 2 - b->len) {
		b->failed = true;
		return AEP_ENOMEM;
	}
	size_t need = b->len + extra;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = aep_realloc(b->data, cap);
	if (p == NULL) {
		b->failed = true;
		return AEP_ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int aep_buf_append(struct aep_buf *b, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	int rv = aep_buf_reserve(b, len);
	if (rv != 0)
		return rv;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int aep_buf_printf(struct aep_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return AEP_EINTERNAL;
	int rv = aep_buf_reserve(b, (size_t)n + 1);
	if (rv != 0)
		return rv;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *aep_buf_steal(struct aep_buf *b, size_t *len)
{
	char *p = b->data;
	if (len != NULL)
		*len = b->len;
	aep_buf_init(b);
	return p;
}

int aep_buf_pack_write(void *data, const char *buf, size_t len)
{
	return aep_buf_append(data, buf, len) == 0 ? 0 : -1;
}

void aep_packer_init(msgpack_packer *pk, struct aep_buf *b)
{
	msgpack_packer_init(pk, b, aep_buf_pack_write);
}

void aep_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void aep_pack_str(msgpack_packer *pk, const char *s)
{
	aep_pack_strn(pk, s, strlen(s));
}
