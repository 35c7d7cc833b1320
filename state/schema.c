/* state: the descriptor tables, generated from the lists in schema.h. */
#include "state/schema.h"

#define CHECK_DEFINE(id, ...) \
	const struct state__check state__check_##id = {.name = #id, __VA_ARGS__};
STATE__CHECKS(CHECK_DEFINE)
#undef CHECK_DEFINE

const struct state__schema state__schema_none = {"none", NULL, 0};

#define FIELD_DEFINE(N, T, P, SUB, CHK) \
	{.name = #N,                    \
	 .len = sizeof(#N) - 1,         \
	 .type = STATE__T_##T,          \
	 .presence = STATE__##P,        \
	 .sub = &state__schema_##SUB,   \
	 .check = &state__check_##CHK},

#define SCHEMA_DEFINE(id, list)                                                           \
	static const struct state__field fields_##id[] = {list(FIELD_DEFINE)};            \
	_Static_assert(sizeof(fields_##id) / sizeof(fields_##id[0]) <= STATE__FIELDS_MAX, \
		       "schema " #id " has too many fields");                             \
	const struct state__schema state__schema_##id = {                                 \
	    #id, fields_##id, sizeof(fields_##id) / sizeof(fields_##id[0])};
STATE__SCHEMAS(SCHEMA_DEFINE)
#undef SCHEMA_DEFINE
#undef FIELD_DEFINE
