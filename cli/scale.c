/* aep scale rc/NAME --replicas=N [--current-replicas=M] (kubectl grammar;
 * also "aep scale rc NAME --replicas N").
 *
 * Reads the ReplicationController, sets spec.replicas and writes it back
 * with the resourceVersion it read as a precondition, reading again on
 * Conflict (a few times), like admin manage-node. Every argument is
 * checked before the first call: bad input changes nothing. When the RC
 * already has N replicas nothing is written (so a write that took effect
 * before an Unavailable retry is not done twice). --current-replicas=M
 * refuses to scale unless spec.replicas is M at the moment of the write. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define REPLICAS_MAX 1000000 /* a sanity bound, far above any cluster's room */

static const char scale_usage[] = "usage: aep scale rc/NAME --replicas=N [--current-replicas=M] "
				  "[-n NAMESPACE] (or: aep scale rc NAME --replicas=N)";

/* A non-negative decimal count, or -1 when @s is not one. */
static int64_t parse_count(const char *s)
{
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > REPLICAS_MAX)
		return -1;
	return (int64_t)v;
}

static int bad_count(const char *flag, const char *v)
{
	if (v != NULL && v[0] == '-' && v[1] >= '0' && v[1] <= '9')
		fprintf(stderr, "error: --%s must be a non-negative integer, not %s\n", flag, v);
	else
		fprintf(stderr,
			"error: invalid argument \"%s\" for --%s: must be an integer from 0 to "
			"%d\n",
			v, flag, REPLICAS_MAX);
	return 1;
}

/* spec.replicas of @obj as the replication manager reads it (default 1). */
static int64_t spec_replicas(json_t *obj)
{
	json_t *r = json_object_get(json_object_get(obj, "spec"), "replicas");
	if (r == NULL)
		return 1;
	return json_is_integer(r) ? (int64_t)json_integer_value(r) : 0;
}

struct scale_edit {
	int64_t replicas, current;
};

static enum cli__mod scale_mutate(json_t *obj, void *data)
{
	struct scale_edit *se = data;
	int64_t was = spec_replicas(obj);
	if (se->current >= 0 && was != se->current) {
		fprintf(stderr, "error: Expected replicas to be %" PRId64 ", was %" PRId64 "\n",
			se->current, was);
		return CLI__FAIL;
	}
	json_t *spec = json_object_get(obj, "spec");
	if (was == se->replicas && json_is_integer(json_object_get(spec, "replicas")))
		return CLI__SKIP;
	spec = cli__json_member_object(obj, "spec");
	if (spec == NULL ||
	    json_object_set_new(spec, "replicas", json_integer(se->replicas)) != 0) {
		fprintf(stderr, "error: out of memory\n");
		return CLI__FAIL;
	}
	return CLI__WRITE;
}

static int scale_one(struct cli *c, const struct aep_kind_info *ki, const char *name,
		     int64_t replicas, int64_t current)
{
	struct scale_edit se = {.replicas = replicas, .current = current};
	const char *ns = c->o.ns != NULL ? c->o.ns : "default";
	if (cli__modify(c, ki, ns, name, scale_mutate, &se) == CLI__FAIL)
		return 1;
	printf("%s/%s scaled\n", ki->singular, name);
	return 0;
}

int cli__cmd_scale(struct cli *c)
{
	struct aep_error e = {0};
	const struct aep_kind_info *ki = NULL;
	const char *name = NULL;
	if (c->o.nargs == 0 || c->o.nargs > 2) {
		fprintf(stderr, "error: %s (%s)\n",
			c->o.nargs == 0 ? "you must specify the resource to scale"
					: "only one resource can be scaled at a time",
			scale_usage);
		return 1;
	}
	const char *a = c->o.args[0];
	const char *slash = strchr(a, '/');
	if (slash != NULL) {
		if (c->o.nargs != 1) {
			fprintf(stderr, "error: only one resource can be scaled at a time (%s)\n",
				scale_usage);
			return 1;
		}
		if (slash[1] == '\0' || strchr(slash + 1, '/') != NULL) {
			fprintf(stderr,
				"error: arguments in resource/name form must have a single "
				"resource and name (%s)\n",
				scale_usage);
			return 1;
		}
		ki = cli__kind(a, (size_t)(slash - a), &e);
		name = slash + 1;
	} else {
		if (c->o.nargs != 2) {
			fprintf(stderr, "error: you must specify the name of the resource (%s)\n",
				scale_usage);
			return 1;
		}
		ki = cli__kind(a, strlen(a), &e);
		name = c->o.args[1];
	}
	if (ki == NULL) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	if (ki->kind != AEP_KIND_RC) {
		fprintf(stderr,
			"error: cannot scale %s: only replicationcontrollers (rc) can be "
			"scaled\n",
			ki->plural);
		return 1;
	}
	if (name[0] == '\0') {
		fprintf(stderr, "error: the resource name must not be empty (%s)\n", scale_usage);
		return 1;
	}
	if (c->o.replicas == NULL) {
		fprintf(stderr, "error: required flag(s) \"replicas\" not set (%s)\n", scale_usage);
		return 1;
	}
	int64_t replicas = parse_count(c->o.replicas);
	if (replicas < 0)
		return bad_count("replicas", c->o.replicas);
	int64_t current = -1;
	if (c->o.current_replicas != NULL) {
		current = parse_count(c->o.current_replicas);
		if (current < 0)
			return bad_count("current-replicas", c->o.current_replicas);
	}
	if (c->o.all_ns) {
		fprintf(stderr, "error: -A cannot be used with scale; use -n NAMESPACE\n");
		return 1;
	}
	return scale_one(c, ki, name, replicas, current);
}
