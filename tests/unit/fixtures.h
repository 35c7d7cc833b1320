/* Fixtures shared by the unit tests (tests/unit/fixtures.c). They fail the
 * running cmocka test on any error, so tests can stay about behaviour. */
#ifndef AEP_TESTS_FIXTURES_H
#define AEP_TESTS_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/state.h"

void fx_pack_labels(msgpack_packer *pk, const char *labels);
void fx_pack_meta(msgpack_packer *pk, const char *ns, const char *name, const char *labels);
void fx_pod(struct aep_buf *b, const char *ns, const char *name, const char *labels,
	    const char *node, const char *image);
void fx_simple(struct aep_buf *b, const char *kind, const char *ns, const char *name,
	       const char *labels);
struct aep_cmd fx_cmd_obj(enum aep_op op, enum aep_kind kind, const struct aep_buf *obj,
			  uint64_t precond, const char *uid, int64_t now);
struct aep_cmd fx_cmd_del(enum aep_kind kind, const char *ns, const char *name, uint64_t precond);
void fx_snap(struct aep_store *s, struct aep_buf *out);
void fx_assert_same_bytes(const struct aep_buf *a, const struct aep_buf *b);
struct aep_selector *fx_sel(const char *s);

/* Objects written as JSON with 'single' or "double" quoted strings, packed
 * as msgpack: fx_mp() into @b, fx_decode_json() through aep_object_decode. */
void fx_mp(const char *json, struct aep_buf *b);
int fx_decode_json(const char *json, struct aep_object **o, struct aep_error *e);
struct aep_object *fx_must_decode(const char *json);

/* A decoded Pod with one busybox container (one reference for the caller). */
struct aep_object *fx_pod_object(const char *ns, const char *name, const char *labels);

/* Pieces of objects in the JSON-ish form. */
#define C_WEB	       "{'name':'web','image':'nginx:1.25'}"
#define POD_SPEC(spec) "{'kind':'Pod','metadata':{'name':'p'},'spec':" spec "}"
#define POD_C(c)       POD_SPEC("{'containers':[" c "]}")

/* A Pod using every field of the schema, and one object of each kind
 * (fx_all_kinds[i] NULL means fx_pod_full), in the JSON-ish form. */
extern const char *const fx_pod_full;
extern const char *const fx_all_kinds[];
extern const size_t fx_all_kinds_n;

/* Apply one command as the entry at @index: fx_apply1 leaves the result in
 * *@r (the caller clears it) and returns its code; fx_apply1_code only
 * returns the code. fx_new_store: an empty store. */
int fx_apply1(struct aep_store *s, uint64_t index, const struct aep_cmd *c, struct aep_result *r);
int fx_apply1_code(struct aep_store *s, uint64_t index, const struct aep_cmd *c);
struct aep_store *fx_new_store(void);

/* Fail unless @a and @b have the same kind, metadata and node name. */
void fx_assert_meta_equal(const struct aep_object *a, const struct aep_object *b);

#endif /* AEP_TESTS_FIXTURES_H */
