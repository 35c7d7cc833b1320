/* state/ label selectors: parsing, matching, maps, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/state.h"

/* Labels from "k=v,k2=v2" (already sorted by key), in @store. */
static size_t labels_of(const char *spec, char *store, struct aep_label *out)
{
	size_t n = 0;
	strcpy(store, spec);
	for (char *tok = strtok(store, ","); tok != NULL; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		*eq = '\0';
		out[n].key = tok;
		out[n].value = eq + 1;
		n++;
	}
	return n;
}

static void test_match_table(void **state)
{
	(void)state;
	static const struct {
		const char *sel;
		const char *labels;
		bool match;
	} cases[] = {
	    {"", "app=web", true},
	    {"   ", "", true},
	    {"app=web", "app=web,tier=front", true},
	    {"app==web", "app=web", true},
	    {"app = web", "app=web", true},
	    {"app=web", "app=db", false},
	    {"app=web", "tier=front", false},
	    {"app=web", "", false},
	    {"app!=web", "app=db", true},
	    {"app!=web", "tier=x", true}, /* absent counts as different */
	    {"app!=web", "app=web", false},
	    {"app", "app=", true},
	    {"app", "apps=x", false},
	    {"!app", "tier=x", true},
	    {"! app", "app=x", false},
	    {"app in (web,db)", "app=db", true},
	    {"app in (web, db )", "app=web", true},
	    {"app in(web)", "app=api", false},
	    {"app in (web)", "", false},
	    {"app notin (web,db)", "app=api", true},
	    {"app notin (web,db)", "", true},
	    {"app notin (web,db)", "app=web", false},
	    {"app=web,tier=front", "app=web,tier=front", true},
	    {"app=web,tier=front", "app=web,tier=back", false},
	    {"app=web, !canary, tier in (front,edge)", "app=web,tier=edge", true},
	    {"app=web, !canary, tier in (front,edge)", "app=web,canary=1,tier=edge", false},
	    {"app=", "app=", true},
	    {"app=", "app=x", false},
	    {"example.com/team=a", "app=x,example.com/team=a", true},
	    {"in=x", "in=x", true},
	    {"notin", "notin=1", true},
	    {"a=1,a!=2", "a=1", true},
	};
	char store[256];
	struct aep_label labels[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aep_selector *s = NULL;
		struct aep_error e = {0};
		size_t n = labels_of(cases[i].labels, store, labels);
		int rc = aep_selector_parse(cases[i].sel, strlen(cases[i].sel), &s, &e);
		if (rc != 0)
			fail_msg("case %zu \"%s\": %s", i, cases[i].sel, e.msg);
		if (aep_selector_matches(s, labels, n) != cases[i].match)
			fail_msg("case %zu: \"%s\" on {%s}: want %d", i, cases[i].sel,
				 cases[i].labels, cases[i].match);
		assert_int_equal(aep_selector_empty(s),
				 strspn(cases[i].sel, " ") == strlen(cases[i].sel));
		aep_selector_free(s);
	}
	/* NULL matches everything. */
	assert_true(aep_selector_matches(NULL, labels, 0));
	assert_true(aep_selector_empty(NULL));
}

/* Matching binary-searches: many labels, each found. */
static void test_match_many_labels(void **state)
{
	(void)state;
	struct aep_label labels[64];
	char keys[64][16], sel[64];
	struct aep_selector *s = NULL;
	struct aep_error e = {0};

	for (int i = 0; i < 64; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%02d", i);
		labels[i].key = keys[i];
		labels[i].value = "v";
	}
	for (int i = 0; i < 64; i++) {
		snprintf(sel, sizeof(sel), "k%02d=v,!k%02dx", i, i);
		assert_int_equal(aep_selector_parse(sel, strlen(sel), &s, &e), 0);
		assert_true(aep_selector_matches(s, labels, 64));
		assert_false(aep_selector_matches(s, labels, (size_t)i)); /* k_i not in prefix */
		aep_selector_free(s);
	}
}

static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *sel;
		const char *msg;
	} cases[] = {
	    {",", "expected a label key"},
	    {"a=b,", "expected a requirement after ','"},
	    {"a=b,,c=d", "expected a label key"},
	    {"a b", "expected '=', '==', '!=', 'in', 'notin' or ','"},
	    {"a=b c", "expected ','"},
	    {"a in x", "expected '('"},
	    {"a in ()", "a value set must not be empty"},
	    {"a in (x", "expected ',' or ')'"},
	    {"a in (x y)", "expected ',' or ')'"},
	    {"a notin", "expected '('"},
	    {"!", "expected a label key"},
	    {"!a=b", "expected ','"},
	    {"a=(b)", "expected ','"},
	    {"-a=b", "key \"-a\": name part must consist"},
	    {"a=-b", "value \"-b\""},
	    {"a/b/c=d", "at most one '/'"},
	    {"a>1", "expected '=', '==', '!='"},
	    {"a=b)", "expected ','"},
	    {"=b", "expected a label key"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aep_selector *s = NULL;
		struct aep_error e = {0};
		int rc = aep_selector_parse(cases[i].sel, strlen(cases[i].sel), &s, &e);
		if (rc != AEP_EINVALID || strstr(e.msg, cases[i].msg) == NULL)
			fail_msg("case %zu \"%s\": got %s \"%s\", want \"%s\"", i, cases[i].sel,
				 aep_err_code(rc), e.msg, cases[i].msg);
		assert_null(s);
	}
	/* Long values are refused by the label syntax. */
	char sel[100];
	snprintf(sel, sizeof(sel), "a=%064d", 0);
	struct aep_selector *s = NULL;
	struct aep_error e = {0};
	assert_int_equal(aep_selector_parse(sel, strlen(sel), &s, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "no more than 63"));
	/* The length bounds the parse: no reading past it. */
	assert_int_equal(aep_selector_parse("a=b,junk junk", 3, &s, &e), 0);
	struct aep_label l = {"a", "b"};
	assert_true(aep_selector_matches(s, &l, 1));
	aep_selector_free(s);
}

static void test_required_label(void **state)
{
	(void)state;
	static const struct {
		const char *sel;
		const char *key, *value; /* NULL: none */
	} cases[] = {
	    {"", NULL, NULL},
	    {"!a,b!=c,d notin (e),f", NULL, NULL},
	    {"a in (x,y)", NULL, NULL},
	    {"a=x", "a", "x"},
	    {"!z, a==x, b=y", "a", "x"},
	    {"a in (x,y), b in (y)", "b", "y"},
	    {"a=", "a", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aep_selector *s = NULL;
		struct aep_error e = {0};
		const char *k = NULL, *v = NULL;
		assert_int_equal(aep_selector_parse(cases[i].sel, strlen(cases[i].sel), &s, &e), 0);
		bool has = aep_selector_required_label(s, &k, &v);
		assert_int_equal(has, cases[i].key != NULL);
		if (has) {
			assert_string_equal(k, cases[i].key);
			assert_string_equal(v, cases[i].value);
		}
		aep_selector_free(s);
	}
	const char *k, *v;
	assert_false(aep_selector_required_label(NULL, &k, &v));
}

static void pack_map(struct aep_buf *b, const char *const *kv, size_t n)
{
	msgpack_packer pk;
	aep_buf_init(b);
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, n);
	for (size_t i = 0; i < 2 * n; i++)
		aep_pack_str(&pk, kv[i]);
}

static int from_map(struct aep_buf *b, struct aep_selector **s, struct aep_error *e,
		    msgpack_zone *z)
{
	msgpack_object o;
	size_t off = 0;
	assert_int_equal(msgpack_unpack(b->data, b->len, &off, z, &o), MSGPACK_UNPACK_SUCCESS);
	return aep_selector_from_map(&o, s, e);
}

static void test_from_map(void **state)
{
	(void)state;
	static const char *const kv[] = {"tier", "front", "app", "web"};
	struct aep_label yes[] = {{"app", "web"}, {"tier", "front"}, {"z", "1"}};
	struct aep_label no[] = {{"app", "web"}, {"tier", "back"}};
	struct aep_selector *s = NULL;
	struct aep_error e = {0};
	struct aep_buf b;
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);

	pack_map(&b, kv, 2);
	assert_int_equal(from_map(&b, &s, &e, &z), 0);
	assert_false(aep_selector_empty(s));
	assert_true(aep_selector_matches(s, yes, 3));
	assert_false(aep_selector_matches(s, no, 2));
	const char *rk, *rv;
	assert_true(aep_selector_required_label(s, &rk, &rv));
	assert_string_equal(rk, "tier");
	assert_string_equal(rv, "front");
	assert_false(aep_selector_matches(s, yes, 1));
	aep_selector_free(s);
	aep_buf_free(&b);

	/* Empty map and nil: the empty selector, matching everything. */
	pack_map(&b, kv, 0);
	assert_int_equal(from_map(&b, &s, &e, &z), 0);
	assert_true(aep_selector_empty(s));
	assert_true(aep_selector_matches(s, no, 2));
	aep_selector_free(s);
	aep_buf_free(&b);
	assert_int_equal(aep_selector_from_map(NULL, &s, &e), 0);
	assert_true(aep_selector_empty(s));
	aep_selector_free(s);

	/* Bad keys, bad values, wrong types. */
	static const char *const bad_key[] = {"a b", "x"};
	pack_map(&b, bad_key, 1);
	s = NULL;
	assert_int_equal(from_map(&b, &s, &e, &z), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "selector: \"a b\": name part"));
	assert_null(s);
	aep_buf_free(&b);
	static const char *const bad_val[] = {"a", "x y"};
	pack_map(&b, bad_val, 1);
	assert_int_equal(from_map(&b, &s, &e, &z), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "a valid label"));
	aep_buf_free(&b);
	{
		msgpack_packer pk;
		aep_buf_init(&b);
		aep_packer_init(&pk, &b);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "a");
		msgpack_pack_int(&pk, 1);
		assert_int_equal(from_map(&b, &s, &e, &z), AEP_EINVALID);
		assert_non_null(strstr(e.msg, "must be strings"));
		aep_buf_free(&b);
		aep_buf_init(&b);
		aep_packer_init(&pk, &b);
		msgpack_pack_array(&pk, 0);
		assert_int_equal(from_map(&b, &s, &e, &z), AEP_EINVALID);
		aep_buf_free(&b);
	}
	msgpack_zone_destroy(&z);
}

static void test_alloc_failure(void **state)
{
	(void)state;
	const char *sel = "app=web,tier in (a,b,c),!canary";
	static const char *const kv[] = {"tier", "front", "app", "web"};
	struct aep_label l[] = {{"app", "web"}, {"tier", "b"}};
	struct aep_buf b;
	msgpack_zone z;
	int rc = -1;
	long n;

	for (n = 1; n < 100; n++) {
		struct aep_selector *s = NULL;
		struct aep_error e = {0};
		aep_heap_fault_after(n);
		rc = aep_selector_parse(sel, strlen(sel), &s, &e);
		aep_heap_fault_off();
		if (rc == 0) {
			assert_true(aep_selector_matches(s, l, 2));
			aep_selector_free(s);
			break;
		}
		assert_int_equal(rc, AEP_ENOMEM);
		assert_null(s);
	}
	assert_int_equal(rc, 0);
	assert_true(n > 1);

	msgpack_zone_init(&z, 1024);
	pack_map(&b, kv, 2);
	for (n = 1; n < 100; n++) {
		struct aep_selector *s = NULL;
		struct aep_error e = {0};
		aep_heap_fault_after(n);
		rc = from_map(&b, &s, &e, &z);
		aep_heap_fault_off();
		if (rc == 0) {
			aep_selector_free(s);
			break;
		}
		assert_int_equal(rc, AEP_ENOMEM);
	}
	assert_int_equal(rc, 0);
	aep_buf_free(&b);
	msgpack_zone_destroy(&z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_table),	 cmocka_unit_test(test_match_many_labels),
	    cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_required_label),
	    cmocka_unit_test(test_from_map),	 cmocka_unit_test(test_alloc_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
