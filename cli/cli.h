/* cli: the command-line client (kubectl/oc grammar) and local-cluster
 * tooling. Speaks only RPC to the masters. Also home of what the CLI and
 * `aep up` share: manifest loading (YAML/JSON via libyaml), printers
 * (YAML via libyaml, JSON via jansson, tables), the client configuration
 * file and certificate generation (OpenSSL) for `aep admin init`. */
#ifndef AEP_CLI_H
#define AEP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <msgpack.h>

#include "lib/lib.h"

/* Entry point for every verb but "master". */
int aep_cli_main(int argc, char **argv);
/* `aep up [--masters N] [--nodes N] [--dir D] [--base-port P]` (cli/up.c):
 * a local cluster; argv[0] is "up" (aep_cli_main hands "aep up ..." to it
 * untouched: its flags are its own). Runs until SIGINT/SIGTERM. */
int aep_cli_up(int argc, char **argv);

struct aep_tls;
/* Ask the master at @addr (its own view, one short call) which master is
 * leader; 0 and the name in @leader, or AEP_EUNAVAILABLE. */
int aep_cli_leader_of(const char *addr, struct aep_tls *tls, char *leader, size_t size);

/* ---- manifests ---------------------------------------------------------- */

#define AEP_MANIFEST_MAX   (8u << 20) /* bytes of one manifest file */
#define AEP_MANIFEST_DEPTH 64	      /* nesting */
#define AEP_MANIFEST_NODES 1000000    /* YAML nodes after alias expansion */

/* The documents of a manifest, each encoded as one msgpack map. */
struct aep_docs {
	struct aep_buf *items;
	size_t n;
};

/* Parse YAML (multi-document, "---") or JSON text. A document of kind
 * "List" (or any with "items") is expanded into its items. Scalars keep
 * YAML's types: quoted -> string, plain ints -> integers, true/false ->
 * bool, null/~ -> nil, floats -> float. Bounded: size, depth, node count
 * (alias bombs). Errors name the line: "line 7: ...". */
int aep_manifest_parse(const char *text, size_t len, struct aep_docs *out, struct aep_error *e);
/* Read FILE ("-" = stdin) and parse it. */
int aep_manifest_load(const char *path, struct aep_docs *out, struct aep_error *e);
void aep_docs_free(struct aep_docs *d);

/* ---- printers ----------------------------------------------------------- */
int aep_print_yaml(FILE *f, const msgpack_object *o);
int aep_print_json(FILE *f, const msgpack_object *o);

/* ---- client configuration ------------------------------------------------ */
struct aep_cli_config {
	char *servers; /* "127.0.0.1:7001,127.0.0.1:7002" */
	char *ca;
	char *cert;
	char *key;
};
/* --config PATH, else $AEP_CONFIG, else ~/.aep/config. */
int aep_cli_config_load(const char *path, struct aep_cli_config *out, struct aep_error *e);
void aep_cli_config_free(struct aep_cli_config *c);

/* ---- certificates ------------------------------------------------------- */

/* One master for `aep admin init --masters m1=127.0.0.1:7001,...`. */
struct aep_pki_master {
	char *name;
	char *addr; /* host:port of its API */
};

/* Create DIR/pki/ca.{crt,key}, DIR/pki/NAME.{crt,key} per master (subject
 * alternative names: the master's host as IP or DNS, plus 127.0.0.1 and
 * localhost), DIR/pki/admin.{crt,key} (CN=admin, O=system:masters) and
 * DIR/admin.conf. Keys: ECDSA P-256. Refuses (AEP_EEXISTS) when
 * DIR/pki/ca.crt exists. */
int aep_pki_init(const char *dir, const struct aep_pki_master *masters, size_t n,
		 struct aep_error *e);
/* Issue a certificate signed by DIR/pki/ca.{crt,key} for @cn (with @org
 * and subject alternative names @sans, comma separated, may be NULL),
 * writing @crt_path and @key_path. */
int aep_pki_issue(const char *dir, const char *cn, const char *org, const char *sans,
		  const char *crt_path, const char *key_path, struct aep_error *e);

struct evp_pkey_st; /* OpenSSL's EVP_PKEY */
/* Sign a client certificate (extended key usage clientAuth) for the public
 * key @key (e.g. of a verified certificate request) with the CA in
 * @ca_crt/@ca_key: subject CN @cn and O @org (may be NULL), valid from an
 * hour ago for @days days. Appends the PEM to @out. Returns 0,
 * AEP_EINVALID (bad @cn or @days), AEP_ENOTFOUND (a CA file cannot be
 * opened), AEP_EINTERNAL (OpenSSL, with its message) or AEP_ENOMEM. */
int aep_pki_sign_client(const char *ca_crt, const char *ca_key, struct evp_pkey_st *key,
			const char *cn, const char *org, int days, struct aep_buf *out,
			struct aep_error *e);

#endif /* AEP_CLI_H */
