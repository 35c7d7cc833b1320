/* state: the kind table, from AEP_KINDS (state.h) and STATE__KIND_SCHEMAS
 * (schema.h). */
#include "state/schema.h"

#include <strings.h>

static const struct aep_kind_info kinds[AEP_KIND__COUNT] = {
#define KIND_INFO(e, k, p, sg, s, n)            \
	[AEP_KIND_##e] = {.kind = AEP_KIND_##e, \
			  .name = k,            \
			  .plural = p,          \
			  .singular = sg,       \
			  .shortname = s,       \
			  .namespaced = n},
    AEP_KINDS(KIND_INFO)
#undef KIND_INFO
};

static const struct state__kind_schema schemas[AEP_KIND__COUNT] = {
#define KIND_SCHEMA(e, top, name_check, check) \
	[AEP_KIND_##e] = {&state__schema_##top, &state__check_##name_check, check},
    STATE__KIND_SCHEMAS(KIND_SCHEMA)
#undef KIND_SCHEMA
};

const struct aep_kind_info *aep_kind_info(enum aep_kind kind)
{
	if ((unsigned)kind >= AEP_KIND__COUNT)
		return NULL;
	return &kinds[kind];
}

static bool name_is(const char *want, const char *name, size_t len)
{
	return strlen(want) == len && strncasecmp(want, name, len) == 0;
}

const struct aep_kind_info *aep_kind_lookup(const char *name, size_t len)
{
	if (name == NULL)
		return NULL;
	for (unsigned i = 0; i < AEP_KIND__COUNT; i++) {
		const struct aep_kind_info *k = &kinds[i];
		if (name_is(k->name, name, len) || name_is(k->plural, name, len) ||
		    name_is(k->singular, name, len) || name_is(k->shortname, name, len))
			return k;
	}
	return NULL;
}

const struct state__kind_schema *state__kind_schema(enum aep_kind kind)
{
	return &schemas[kind];
}
