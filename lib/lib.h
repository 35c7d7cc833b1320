/* lib: the base every AEP layer stands on.
 *
 * - One error enum for the whole project, generated from AEP_ERRORS, with the
 *   wire code string of each ("NotFound", ...) as DESIGN.md lists them.
 * - struct aep_error: a code plus a human message that each layer prefixes
 *   with its own context ("create pod default/web: name: must be ...").
 * - One replaceable heap (aep_malloc & co.) that tests can make fail at the
 *   Nth allocation.
 * - struct aep_buf: a growable byte buffer, also a msgpack-c packer target.
 * - aep_mp_check(): bounds a msgpack byte stream (depth, container lengths,
 *   string sizes, total bytes) before msgpack-c allocates anything for it.
 */
#ifndef AEP_LIB_H
#define AEP_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/* X(ENUM, "WireCode") */
#define AEP_ERRORS(X)                   \
	X(OK, "OK")                     \
	X(NOTFOUND, "NotFound")         \
	X(EXISTS, "AlreadyExists")      \
	X(CONFLICT, "Conflict")         \
	X(INVALID, "Invalid")           \
	X(FORBIDDEN, "Forbidden")       \
	X(UNAUTHORIZED, "Unauthorized") \
	X(NOTLEADER, "NotLeader")       \
	X(EXPIRED, "Expired")           \
	X(UNAVAILABLE, "Unavailable")   \
	X(TOOLARGE, "TooLarge")         \
	X(BADREQUEST, "BadRequest")     \
	X(NOMETHOD, "MethodNotFound")   \
	X(TIMEOUT, "Timeout")           \
	X(CANCELED, "Canceled")         \
	X(NOMEM, "NoMemory")            \
	X(IO, "IOError")                \
	X(INTERNAL, "Internal")

enum aep_err {
#define AEP__ERR_ENUM(name, str) AEP_E##name,
	AEP_ERRORS(AEP__ERR_ENUM)
#undef AEP__ERR_ENUM
	    AEP_E__COUNT
};
#define AEP_OK AEP_EOK

/* The wire code of @err ("NotFound"); "Internal" for out-of-range values. */
const char *aep_err_code(int err);
/* The enum value of a wire code, or AEP_EINTERNAL when unknown. */
int aep_err_from_code(const char *code, size_t len);

#define AEP_ERRMSG_MAX 512

/* A code with its message. Zero-initialise; functions that fail fill it. */
struct aep_error {
	int code;
	char msg[AEP_ERRMSG_MAX];
};

/* Set @e to @code with a formatted message; returns @code. */
int aep_errorf(struct aep_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the message already in @e with "CONTEXT: "; returns e->code. */
int aep_error_prefix(struct aep_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aep_error_clear(struct aep_error *e);

/* ---- heap ---------------------------------------------------------------
 * All AEP allocations go through these. aep_malloc(0) returns a unique
 * pointer. Failure returns NULL (never aborts). */
void *aep_malloc(size_t size);
void *aep_calloc(size_t n, size_t size);
void *aep_realloc(void *ptr, size_t size);
void aep_free(void *ptr);
char *aep_strdup(const char *s);
char *aep_strndup(const char *s, size_t n);

/* Fault injection for tests: the @n-th allocation from now (1 = the next)
 * and every later one fails until aep_heap_fault_off(). n <= 0: off. */
void aep_heap_fault_after(long n);
void aep_heap_fault_off(void);
/* Allocations that failed by injection since the last aep_heap_fault_after. */
long aep_heap_fault_count(void);

/* ---- byte buffer -------------------------------------------------------- */
struct aep_buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed; /* an append failed for lack of memory; len is unchanged */
};

void aep_buf_init(struct aep_buf *b);
void aep_buf_free(struct aep_buf *b);
void aep_buf_reset(struct aep_buf *b); /* len = 0, keeps memory */
int aep_buf_reserve(struct aep_buf *b, size_t extra);
int aep_buf_append(struct aep_buf *b, const void *data, size_t len);
int aep_buf_printf(struct aep_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the bytes to the caller (who aep_free()s them); @b becomes empty. */
char *aep_buf_steal(struct aep_buf *b, size_t *len);

/* msgpack_packer write callback: msgpack_packer_init(&pk, &buf, aep_buf_pack_write). */
int aep_buf_pack_write(void *data, const char *buf, size_t len);
/* Convenience: a packer writing into @b. */
void aep_packer_init(msgpack_packer *pk, struct aep_buf *b);
void aep_pack_str(msgpack_packer *pk, const char *s);
void aep_pack_strn(msgpack_packer *pk, const char *s, size_t n);

/* ---- msgpack limits ----------------------------------------------------- */
struct aep_mp_limits {
	size_t max_bytes;   /* total encoded size of one object */
	unsigned max_depth; /* nesting of arrays/maps; 1 = flat */
	uint32_t max_len;   /* elements in one array or pairs in one map */
	uint32_t max_str;   /* bytes in one str/bin/ext */
	uint64_t max_items; /* all elements in the object together */
};

/* The defaults used on the API: 4 MiB, depth 32, 100000 elements per
 * container, 1 MiB strings, 1000000 items. */
extern const struct aep_mp_limits aep_mp_default_limits;

/* Walk the msgpack object that starts at @buf without allocating.
 * Returns 0 and sets *@used to its encoded size when one whole object is
 * present and within @lim; AEP_EAGAIN-like incompleteness is reported as
 * AEP_ECANCELED with *@used = 0 ("need more bytes"); a limit or a malformed
 * byte gives AEP_ETOOLARGE / AEP_EBADREQUEST with a message in @e. */
int aep_mp_check(const char *buf, size_t len, const struct aep_mp_limits *lim, size_t *used,
		 struct aep_error *e);

/* Unpack exactly one object from @buf (already checked by aep_mp_check)
 * into @zone. Returns 0 or AEP_EBADREQUEST / AEP_ENOMEM. */
int aep_mp_unpack(const char *buf, size_t len, msgpack_zone *zone, msgpack_object *out,
		  struct aep_error *e);

/* Small helpers for reading msgpack_object maps. */
const msgpack_object *aep_mp_map_get(const msgpack_object *map, const char *key);
bool aep_mp_str_eq(const msgpack_object *o, const char *s);
/* Copy a str object into a NUL-terminated heap string (NULL if not a str). */
char *aep_mp_strdup(const msgpack_object *o);

/* Parse a whole decimal number in [@min, @max] (no sign, no trailing
 * characters). Returns 0, or AEP_EINVALID with "NAME: must be ..." in @e. */
int aep_parse_uint(const char *s, const char *name, unsigned long long min, unsigned long long max,
		   unsigned long long *out, struct aep_error *e);

/* A duration: "500ms", "40s", "5m", "1h30m", "7d", "1.5h", or a bare number of
 * seconds ("30"). Returns 0 with *@out_ms in [@min_ms, @max_ms], or
 * AEP_EINVALID naming @name and the text (nothing stored). */
int aep_parse_duration(const char *s, const char *name, int64_t min_ms, int64_t max_ms,
		       int64_t *out_ms, struct aep_error *e);

/* ---- time (not for state/: apply never reads a clock) ------------------- */
int64_t aep_now_realtime_ns(void);
int64_t aep_now_monotonic_ns(void);

#endif /* AEP_LIB_H */
