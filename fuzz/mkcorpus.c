/* aep-fuzz-mkcorpus DIR: write the seed corpora of the fuzz drivers into
 * DIR/fuzz_NAME/ (fuzz/corpus/ in the tree), from the manifests below and
 * the real code paths: manifests parsed by aep_manifest_parse, objects
 * made canonical by aep_object_decode, RPC messages packed as clients
 * send them, Raft entries built with aep_batch_*, snapshots taken from a
 * store those entries were applied to. Deterministic: the same tree gives
 * the same files. Exits non-zero with a message on any failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lz4frame.h>

#include "cli/cli.h"
#include "state/state.h"

static const char *outdir;

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "aep-fuzz-mkcorpus: %s: %s\n", what, msg);
	exit(1);
}

static void put(const char *fuzzer, const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", outdir, fuzzer);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die(path, strerror(errno));
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, fuzzer, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die(path, strerror(errno));
}

/* ---- manifests ---------------------------------------------------------- */

struct manifest {
	const char *name;
	const char *text;
};

static const struct manifest manifests[] = {
    {"pod-full.yaml", "apiVersion: v1\n"
		      "kind: Pod\n"
		      "metadata:\n"
		      "  name: web-1\n"
		      "  namespace: default\n"
		      "  labels: {app: web, tier: frontend, example.com/owner: team-a}\n"
		      "  annotations:\n"
		      "    description: \"the front end\"\n"
		      "    example.com/build: '42'\n"
		      "spec:\n"
		      "  nodeName: node-1\n"
		      "  nodeSelector: {disk: ssd}\n"
		      "  restartPolicy: OnFailure\n"
		      "  terminationGracePeriodSeconds: 30\n"
		      "  containers:\n"
		      "    - name: httpd\n"
		      "      image: busybox:1.36\n"
		      "      command: [httpd, -f, -p, \"80\"]\n"
		      "      args: [\"-v\"]\n"
		      "      workingDir: /srv\n"
		      "      env:\n"
		      "        - {name: MODE, value: production}\n"
		      "        - name: EMPTY\n"
		      "      ports:\n"
		      "        - {name: http, containerPort: 80, protocol: TCP}\n"
		      "        - {containerPort: 53, hostPort: 5353, protocol: UDP}\n"
		      "      resources:\n"
		      "        requests: {cpu: 100m, memory: 64Mi}\n"
		      "        limits: {cpu: 1, memory: 1.5Gi}\n"
		      "      volumeMounts:\n"
		      "        - {name: data, mountPath: /data, readOnly: true}\n"
		      "      imagePullPolicy: IfNotPresent\n"
		      "      securityContext: {privileged: false, runAsUser: 1000}\n"
		      "  volumes:\n"
		      "    - name: data\n"
		      "      hostPath: {path: /var/data}\n"
		      "    - name: scratch\n"
		      "      emptyDir: {medium: Memory, sizeLimit: 128Mi}\n"
		      "status:\n"
		      "  phase: Running\n"
		      "  podIP: 10.1.0.5\n"
		      "  hostIP: 192.168.0.10\n"
		      "  startTime: 2026-11-27T23:28:38Z\n"
		      "  conditions:\n"
		      "    - {type: Ready, status: \"True\", "
		      "lastTransitionTime: \"2026-11-27T23:28:40.25+01:00\"}\n"
		      "  containerStatuses:\n"
		      "    - name: httpd\n"
		      "      ready: true\n"
		      "      restartCount: 2\n"
		      "      containerID: crun://0123abcd\n"
		      "      state:\n"
		      "        running: {startedAt: 2026-11-27T23:28:39Z}\n"},
    {"pod-min.yaml", "kind: Pod\n"
		     "metadata: {name: db}\n"
		     "spec:\n"
		     "  containers: [{name: db, image: postgres}]\n"},
    {"pod-terminated.yaml", "kind: Pod\n"
			    "metadata:\n"
			    "  name: job-7\n"
			    "  namespace: kube-system\n"
			    "  labels: {app: batch}\n"
			    "  resourceVersion: \"65537\"\n"
			    "  uid: 5b9c0a2e-1111-4222-8333-944455556666\n"
			    "  generation: 3\n"
			    "  creationTimestamp: 2026-01-02T03:04:05.123456789Z\n"
			    "spec:\n"
			    "  restartPolicy: Never\n"
			    "  hostNetwork: true\n"
			    "  containers:\n"
			    "    - name: run\n"
			    "      image: alpine\n"
			    "      securityContext: {readOnlyRootFilesystem: true}\n"
			    "status:\n"
			    "  phase: Failed\n"
			    "  reason: Error\n"
			    "  message: exited\n"
			    "  containerStatuses:\n"
			    "    - name: run\n"
			    "      state:\n"
			    "        terminated: {exitCode: 137, reason: OOMKilled, "
			    "startedAt: 2026-01-02T03:04:06Z, finishedAt: 2026-01-02T03:05:00Z}\n"
			    "    - name: side\n"
			    "      state: {waiting: {reason: ImagePullBackOff, message: no}}\n"},
    {"pod-relabel.yaml", "kind: Pod\n"
			 "metadata: {name: web-1, labels: {app: web, version: \"2\"}}\n"
			 "spec:\n"
			 "  nodeName: node-2\n"
			 "  containers: [{name: httpd, image: busybox:1.37}]\n"},
    {"rc.yaml", "apiVersion: v1\n"
		"kind: ReplicationController\n"
		"metadata:\n"
		"  name: web\n"
		"  labels: {app: web}\n"
		"spec:\n"
		"  replicas: 3\n"
		"  selector: {app: web}\n"
		"  template:\n"
		"    metadata:\n"
		"      labels: {app: web}\n"
		"      annotations: {note: templated}\n"
		"    spec:\n"
		"      containers:\n"
		"        - name: httpd\n"
		"          image: busybox\n"
		"          ports: [{containerPort: 80}]\n"
		"status: {replicas: 3, readyReplicas: 2, availableReplicas: 2, "
		"observedGeneration: 1}\n"},
    {"service.yaml",
     "kind: Service\n"
     "metadata: {name: web, labels: {app: web}}\n"
     "spec:\n"
     "  selector: {app: web}\n"
     "  type: NodePort\n"
     "  clusterIP: 172.30.0.10\n"
     "  sessionAffinity: ClientIP\n"
     "  ports:\n"
     "    - {name: http, port: 80, targetPort: http, protocol: TCP, nodePort: 30080}\n"
     "    - {name: dns, port: 53, targetPort: 5353, protocol: UDP}\n"
     "status:\n"
     "  loadBalancer:\n"
     "    ingress: [{ip: 203.0.113.7}, {hostname: lb.example.com}]\n"},
    {"service-headless.yaml", "kind: Service\n"
			      "metadata: {name: db, namespace: kube-system}\n"
			      "spec: {clusterIP: None, ports: [{port: 5432}]}\n"},
    {"endpoints.yaml", "kind: Endpoints\n"
		       "metadata: {name: web}\n"
		       "subsets:\n"
		       "  - addresses:\n"
		       "      - ip: 10.1.0.5\n"
		       "        nodeName: node-1\n"
		       "        hostname: web-1\n"
		       "        targetRef: {kind: Pod, namespace: default, name: web-1, uid: x}\n"
		       "    notReadyAddresses: [{ip: \"fd00::5\"}]\n"
		       "    ports: [{name: http, port: 80, protocol: TCP}]\n"},
    {"node.yaml", "kind: Node\n"
		  "metadata:\n"
		  "  name: node-1\n"
		  "  labels: {kubernetes.io/hostname: node-1, region: east, zone: a}\n"
		  "spec:\n"
		  "  podCIDR: 10.1.0.0/24\n"
		  "  unschedulable: false\n"
		  "  providerID: aep://node-1\n"
		  "  taints: [{key: dedicated, value: db, effect: NoSchedule}]\n"
		  "status:\n"
		  "  capacity: {cpu: 4, memory: 16Gi, pods: 110}\n"
		  "  allocatable: {cpu: 3500m, memory: 15Gi, pods: 100}\n"
		  "  conditions:\n"
		  "    - type: Ready\n"
		  "      status: \"True\"\n"
		  "      reason: KubeletReady\n"
		  "      message: ready\n"
		  "      lastHeartbeatTime: 2026-11-27T23:28:38Z\n"
		  "      lastTransitionTime: 2026-11-27T20:00:00Z\n"
		  "  addresses: [{type: InternalIP, address: 192.168.0.10}, "
		  "{type: Hostname, address: node-1}]\n"
		  "  nodeInfo: {kernelVersion: 6.1.0, osImage: Debian, "
		  "containerRuntimeVersion: crun 1.8, architecture: amd64}\n"
		  "  phase: Running\n"},
    {"namespace.yaml", "kind: Namespace\n"
		       "metadata: {name: team-a, labels: {owner: a}}\n"
		       "spec: {finalizers: [kubernetes]}\n"
		       "status: {phase: Active}\n"},
    {"event.yaml", "kind: Event\n"
		   "metadata: {name: web-1.1790000000, namespace: default}\n"
		   "involvedObject: {kind: Pod, namespace: default, name: web-1}\n"
		   "reason: Scheduled\n"
		   "message: assigned default/web-1 to node-1\n"
		   "type: Normal\n"
		   "count: 1\n"
		   "firstTimestamp: 2026-11-27T23:28:38Z\n"
		   "lastTimestamp: 2026-11-27T23:28:38Z\n"
		   "source: {component: scheduler, host: m1}\n"},
    {"list-multi.yaml", "# two documents, one a List, anchors and aliases\n"
			"---\n"
			"kind: List\n"
			"items:\n"
			"  - kind: Pod\n"
			"    metadata: &m {name: a, labels: &l {app: x}}\n"
			"    spec: &s {containers: [{name: c, image: i}]}\n"
			"  - kind: Pod\n"
			"    metadata: {name: b, labels: *l}\n"
			"    spec: *s\n"
			"---\n"
			"kind: Service\n"
			"metadata: {name: x}\n"
			"spec: {selector: &l2 {app: x}, ports: [{port: 80, targetPort: 8080}]}\n"
			"status: {loadBalancer: {ingress: [{ip: 10.0.0.1}]}}\n"
			"...\n"},
    {"scalars.yaml", "kind: Pod\n"
		     "metadata:\n"
		     "  name: !!str scalars\n"
		     "  annotations:\n"
		     "    a: '1'\n"
		     "    b: \"0x1F\"\n"
		     "    c: 'null'\n"
		     "    d: |\n"
		     "      multi\n"
		     "      line\n"
		     "spec:\n"
		     "  terminationGracePeriodSeconds: 0x1e\n"
		     "  hostNetwork: !!bool true\n"
		     "  containers:\n"
		     "    - name: c\n"
		     "      image: >-\n"
		     "        folded\n"
		     "      command: [~, null, 1.5e3, -0o17, .inf, !!binary aGVsbG8=]\n"},
    {"pod.json", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\",\n"
		 " \"metadata\": {\"name\": \"json-pod\", \"labels\": {\"app\": \"web\"}},\n"
		 " \"spec\": {\"containers\": [{\"name\": \"web\", \"image\": \"nginx\",\n"
		 "   \"ports\": [{\"containerPort\": 8080}],\n"
		 "   \"env\": [{\"name\": \"A\", \"value\": \"\\u00e9\\n\"}]}]}}\n"},
    {"list.json", "{\"kind\": \"List\", \"items\": [\n"
		  " {\"kind\": \"Namespace\", \"metadata\": {\"name\": \"ns1\"}},\n"
		  " {\"kind\": \"ReplicationController\", \"metadata\": {\"name\": \"r\", "
		  "\"namespace\": \"ns1\"},\n"
		  "  \"spec\": {\"replicas\": 2, \"selector\": {\"a\": \"b\"}, \"template\": "
		  "{\"metadata\": {\"labels\": {\"a\": \"b\"}},\n"
		  "   \"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"i\"}]}}}}]}\n"},
};

#define NMANIFESTS (sizeof(manifests) / sizeof(manifests[0]))

/* Every object document of every manifest, canonical; kept for the other
 * corpora. */
static struct aep_object *objs[64];
static size_t nobjs;

static void base_name(const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s", name);
	char *dot = strrchr(out, '.');
	if (dot != NULL)
		*dot = '\0';
}

static void do_manifests(void)
{
	struct aep_error e = {0};
	char base[128], name[160];

	for (size_t i = 0; i < NMANIFESTS; i++) {
		const struct manifest *m = &manifests[i];
		struct aep_docs docs;
		put("fuzz_manifest", m->name, m->text, strlen(m->text));
		if (aep_manifest_parse(m->text, strlen(m->text), &docs, &e) != 0)
			die(m->name, e.msg);
		base_name(m->name, base, sizeof(base));
		for (size_t d = 0; d < docs.n; d++) {
			struct aep_object *o;
			/* As a client sends it, then canonical. */
			snprintf(name, sizeof(name), "%s-%zu.raw.mp", base, d);
			put("fuzz_object", name, docs.items[d].data, docs.items[d].len);
			if (aep_object_decode(docs.items[d].data, docs.items[d].len, &o, &e) != 0)
				continue; /* scalars.yaml: a parser seed, not an object */
			snprintf(name, sizeof(name), "%s-%zu.mp", base, d);
			put("fuzz_object", name, o->data, o->len);
			if (nobjs == sizeof(objs) / sizeof(objs[0]))
				die("objects", "too many");
			objs[nobjs++] = o;
		}
		aep_docs_free(&docs);
	}
}

/* ---- RPC messages ------------------------------------------------------- */

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	aep_pack_str(pk, k);
	aep_pack_str(pk, v);
}

static void put_buf(const char *fuzzer, const char *name, struct aep_buf *b)
{
	if (b->failed)
		die(name, "out of memory");
	put(fuzzer, name, b->data, b->len);
}

static void do_rpc(void)
{
	struct aep_buf b, stream;
	msgpack_packer pk;
	char name[64];

	aep_buf_init(&b);
	aep_buf_init(&stream);
	/* create {object} with each object as a client sends it (canonical). */
	for (size_t i = 0; i < nobjs && i < 6; i++) {
		aep_buf_reset(&b);
		aep_packer_init(&pk, &b);
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, 0);
		msgpack_pack_uint32(&pk, (uint32_t)(i + 1));
		aep_pack_str(&pk, i % 2 ? "update" : "create");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "object");
		aep_buf_append(&b, objs[i]->data, objs[i]->len);
		snprintf(name, sizeof(name), "req-%s-%zu.mp", i % 2 ? "update" : "create", i);
		put_buf("fuzz_rpc_frame", name, &b);
		aep_buf_append(&stream, b.data, b.len);
	}
	/* get, list, delete, watch, unwatch, status, members. */
	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint16(&pk, 300);
	aep_pack_str(&pk, "get");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 4);
	pack_kv_str(&pk, "kind", "pods");
	pack_kv_str(&pk, "namespace", "default");
	pack_kv_str(&pk, "name", "web-1");
	aep_pack_str(&pk, "stale");
	msgpack_pack_true(&pk);
	put_buf("fuzz_rpc_frame", "req-get.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint32(&pk, 70000);
	aep_pack_str(&pk, "list");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	pack_kv_str(&pk, "kind", "po");
	pack_kv_str(&pk, "labelSelector", "app=web,tier!=db,env in (a,b),!canary");
	put_buf("fuzz_rpc_frame", "req-list.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint8(&pk, 9);
	aep_pack_str(&pk, "delete");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 4);
	pack_kv_str(&pk, "kind", "ReplicationController");
	pack_kv_str(&pk, "namespace", "default");
	pack_kv_str(&pk, "name", "web");
	pack_kv_str(&pk, "resourceVersion", "65536");
	put_buf("fuzz_rpc_frame", "req-delete.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint8(&pk, 10);
	aep_pack_str(&pk, "watch");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 3);
	pack_kv_str(&pk, "kind", "svc");
	pack_kv_str(&pk, "labelSelector", "app=web");
	aep_pack_str(&pk, "resourceVersion");
	msgpack_pack_uint64(&pk, 65536);
	put_buf("fuzz_rpc_frame", "req-watch.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	static const char *const bare[] = {"status", "members", "unwatch"};
	for (size_t i = 0; i < 3; i++) {
		aep_buf_reset(&b);
		aep_packer_init(&pk, &b);
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, 0);
		msgpack_pack_uint8(&pk, (uint8_t)(20 + i));
		aep_pack_str(&pk, bare[i]);
		if (i == 2) {
			msgpack_pack_array(&pk, 1);
			msgpack_pack_map(&pk, 1);
			aep_pack_str(&pk, "watch");
			msgpack_pack_uint8(&pk, 1);
		} else {
			msgpack_pack_array(&pk, 0);
		}
		snprintf(name, sizeof(name), "req-%s.mp", bare[i]);
		put_buf("fuzz_rpc_frame", name, &b);
		aep_buf_append(&stream, b.data, b.len);
	}

	/* Responses: a result, an error map with details, a string error. */
	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_nil(&pk);
	aep_buf_append(&b, objs[0]->data, objs[0]->len);
	put_buf("fuzz_rpc_frame", "resp-ok.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint8(&pk, 2);
	msgpack_pack_map(&pk, 3);
	pack_kv_str(&pk, "code", "NotLeader");
	pack_kv_str(&pk, "message", "m2 is not the leader");
	aep_pack_str(&pk, "details");
	msgpack_pack_map(&pk, 1);
	pack_kv_str(&pk, "leader", "127.0.0.1:7001");
	msgpack_pack_nil(&pk);
	put_buf("fuzz_rpc_frame", "resp-err.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint8(&pk, 3);
	aep_pack_str(&pk, "something broke");
	msgpack_pack_nil(&pk);
	put_buf("fuzz_rpc_frame", "resp-strerr.mp", &b);

	/* Notifications: watch events, and the "error" one. */
	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, 2);
	aep_pack_str(&pk, "event");
	msgpack_pack_array(&pk, 2);
	for (size_t i = 0; i < 2; i++) {
		msgpack_pack_map(&pk, 3);
		aep_pack_str(&pk, "watch");
		msgpack_pack_uint8(&pk, 1);
		pack_kv_str(&pk, "type", i == 0 ? "ADDED" : "DELETED");
		aep_pack_str(&pk, "object");
		aep_buf_append(&b, objs[i]->data, objs[i]->len);
	}
	put_buf("fuzz_rpc_frame", "notify-event.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	aep_buf_reset(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, 2);
	aep_pack_str(&pk, "error");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	pack_kv_str(&pk, "code", "TooLarge");
	pack_kv_str(&pk, "message", "message exceeds the limit of 4194304 bytes");
	put_buf("fuzz_rpc_frame", "notify-error.mp", &b);
	aep_buf_append(&stream, b.data, b.len);

	/* Many messages back to back, as one read delivers them. */
	put_buf("fuzz_rpc_frame", "stream.mp", &stream);
	/* Wide and deep headers near the limits (cut short on purpose). */
	static const unsigned char wide[] = {0x94, 0x00, 0x05, 0xa3, 'g',  'e',	 't',
					     0xdd, 0x00, 0x01, 0x86, 0xa1, 0x01, 0x02};
	put("fuzz_rpc_frame", "wide-array.mp", wide, sizeof(wide));
	unsigned char deep[40];
	memset(deep, 0x91, sizeof(deep));
	deep[sizeof(deep) - 1] = 0xc0;
	put("fuzz_rpc_frame", "deep.mp", deep, sizeof(deep));
	aep_buf_free(&stream);
	aep_buf_free(&b);
}

/* ---- entries and snapshots ---------------------------------------------- */

static const unsigned char SPLIT[2] = {0xff, 0xfe};

static struct aep_object *find(enum aep_kind kind, const char *name)
{
	for (size_t i = 0; i < nobjs; i++)
		if (objs[i]->kind == kind && strcmp(objs[i]->meta.name, name) == 0)
			return objs[i];
	die(name, "no such seed object");
	return NULL;
}

/* The last seed of that name (pod-relabel.yaml's web-1, not pod-full's). */
static struct aep_object *find_last(enum aep_kind kind, const char *name)
{
	for (size_t i = nobjs; i-- > 0;)
		if (objs[i]->kind == kind && strcmp(objs[i]->meta.name, name) == 0)
			return objs[i];
	die(name, "no such seed object");
	return NULL;
}

static void cmd_obj(struct aep_batch *b, enum aep_op op, const struct aep_object *o,
		    uint64_t precond, int64_t now)
{
	struct aep_cmd c = {
	    .op = op,
	    .kind = o->kind,
	    .ns = o->meta.ns,
	    .name = o->meta.name,
	    .precond_rv = precond,
	    .now_ns = now,
	    .obj = o->data,
	    .obj_len = o->len,
	};
	snprintf(c.uid, sizeof(c.uid), "00000000-0000-4000-8000-%012lld", (long long)now % 1000);
	if (aep_batch_add(b, &c) != 0)
		die("aep_batch_add", "failed");
}

static void cmd_delete(struct aep_batch *b, enum aep_kind kind, const char *ns, const char *name,
		       uint64_t precond)
{
	struct aep_cmd c = {.op = AEP_OP_DELETE,
			    .kind = kind,
			    .ns = ns,
			    .name = name,
			    .precond_rv = precond,
			    .now_ns = 1795000000000000000};
	if (aep_batch_add(b, &c) != 0)
		die("aep_batch_add", "failed");
}

static void cmd_member(struct aep_batch *b, const char *name, const char *api, const char *peer)
{
	struct aep_cmd c = {.op = AEP_OP_MEMBER,
			    .name = name,
			    .member_api = api,
			    .member_peer = peer,
			    .now_ns = 1795000000000000000};
	if (aep_batch_add(b, &c) != 0)
		die("aep_batch_add", "failed");
}

static void cmd_bind(struct aep_batch *b, const char *ns, const char *name, const char *node,
		     const char *uid)
{
	struct aep_cmd c = {.op = AEP_OP_BIND,
			    .kind = AEP_KIND_POD,
			    .ns = ns,
			    .name = name,
			    .node = node,
			    .now_ns = 1795000000000000000};
	if (uid != NULL)
		snprintf(c.uid, sizeof(c.uid), "%s", uid);
	if (aep_batch_add(b, &c) != 0)
		die("aep_batch_add", "failed");
}

/* Finish @b, apply it to @s at @index, append it to @seq (with a marker
 * before all but the first), and reset @b. */
static void entry_done(struct aep_batch *b, struct aep_store *s, uint64_t index,
		       struct aep_buf *seq, const char *name)
{
	const char *data;
	size_t len;
	if (aep_batch_finish(b, &data, &len) != 0)
		die(name, "aep_batch_finish failed");
	if (name != NULL)
		put("fuzz_apply", name, data, len);
	if (aep_store_apply(s, index, data, len, NULL, NULL) != 0)
		die(name != NULL ? name : "entry", "apply refused it");
	if (seq->len > 0)
		aep_buf_append(seq, SPLIT, sizeof(SPLIT));
	aep_buf_append(seq, data, len);
	aep_batch_reset(b);
}

static void put_snapshot(struct aep_store *s, const char *name)
{
	struct aep_buf snap;
	char raw_name[64];
	aep_buf_init(&snap);
	if (aep_store_snapshot(s, &snap) != 0)
		die(name, "snapshot failed");
	put("fuzz_snapshot", name, snap.data, snap.len);

	/* The content behind the frame, for the driver's wrapping pass. */
	LZ4F_frameInfo_t info;
	LZ4F_dctx *dctx;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		die(name, "lz4");
	size_t consumed = snap.len;
	if (LZ4F_isError(LZ4F_getFrameInfo(dctx, &info, snap.data, &consumed)))
		die(name, "lz4 frame info");
	size_t cap = (size_t)info.contentSize, dst = cap, src = snap.len - consumed;
	char *raw = malloc(cap);
	if (raw == NULL)
		die(name, "out of memory");
	if (LZ4F_isError(LZ4F_decompress(dctx, raw, &dst, snap.data + consumed, &src, NULL)) ||
	    dst != cap)
		die(name, "lz4 decompress");
	snprintf(raw_name, sizeof(raw_name), "%s.raw", name);
	put("fuzz_snapshot", raw_name, raw, cap);
	free(raw);
	LZ4F_freeDecompressionContext(dctx);
	aep_buf_free(&snap);
}

static void do_entries(void)
{
	struct aep_store *s;
	struct aep_batch b;
	struct aep_buf seq;
	const int64_t t0 = 1795000000000000000;

	if (aep_store_new(NULL, &s) != 0)
		die("store", "out of memory");
	put_snapshot(s, "empty.lz4");
	aep_batch_init(&b);
	aep_buf_init(&seq);

	/* 1: a namespace and a node. */
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_NAMESPACE, "team-a"), 0, t0);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_NODE, "node-1"), 0, t0 + 1);
	entry_done(&b, s, 1, &seq, "e1-ns-node.mp");
	/* 2: the web application, group-committed. */
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_POD, "web-1"), 0, t0 + 2);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_RC, "web"), 0, t0 + 3);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_SERVICE, "web"), 0, t0 + 4);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_ENDPOINTS, "web"), 0, t0 + 5);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_EVENT, "web-1.1790000000"), 0, t0 + 6);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_POD, "job-7"), 0, t0 + 7);
	entry_done(&b, s, 2, &seq, "e2-app.mp");
	put_snapshot(s, "app.lz4");
	/* 3: an update with a precondition, a refused create (exists), a
	 * stale update (conflict), a member. */
	struct aep_object *web = aep_store_get(s, AEP_KIND_POD, "default", "web-1");
	if (web == NULL)
		die("web-1", "not stored");
	cmd_obj(&b, AEP_OP_UPDATE, web, web->meta.rv, t0 + 8);
	cmd_obj(&b, AEP_OP_UPDATE, find_last(AEP_KIND_POD, "web-1"), 0, t0 + 8);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_SERVICE, "web"), 0, t0 + 9);
	cmd_obj(&b, AEP_OP_UPDATE, web, 1, t0 + 10);
	cmd_member(&b, "m1", "127.0.0.1:7001", "127.0.0.1:7101");
	cmd_member(&b, "m2", "127.0.0.1:7002", "127.0.0.1:7102");
	aep_object_unref(web);
	entry_done(&b, s, 3, &seq, "e3-update-member.mp");
	/* 4: deletes: one found, one missing, a protected namespace, a
	 * namespace in use, one with a stale precondition. */
	cmd_delete(&b, AEP_KIND_EVENT, "default", "web-1.1790000000", 0);
	cmd_delete(&b, AEP_KIND_POD, "default", "nope", 0);
	cmd_delete(&b, AEP_KIND_NAMESPACE, NULL, "default", 0);
	cmd_delete(&b, AEP_KIND_NAMESPACE, NULL, "kube-system", 0);
	cmd_delete(&b, AEP_KIND_POD, "kube-system", "job-7", 1);
	cmd_delete(&b, AEP_KIND_NODE, NULL, "node-1", 0);
	entry_done(&b, s, 4, &seq, "e4-delete.mp");
	put_snapshot(s, "members.lz4");
	/* 5: the pods of the List manifest, and the JSON namespace with its RC. */
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_POD, "a"), 0, t0 + 11);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_POD, "b"), 0, t0 + 12);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_SERVICE, "x"), 0, t0 + 13);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_NAMESPACE, "ns1"), 0, t0 + 14);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_RC, "r"), 0, t0 + 15);
	cmd_obj(&b, AEP_OP_CREATE, find(AEP_KIND_POD, "json-pod"), 0, t0 + 16);
	entry_done(&b, s, 5, &seq, "e5-more.mp");
	put_snapshot(s, "full.lz4");

	/* 6: the scheduler's bindings: one binds, one is already bound, one
	 * names a missing pod, one a re-created pod (uid), one a bad node. */
	cmd_bind(&b, "default", "a", "node-2", NULL);
	cmd_bind(&b, "default", "a", "node-3", NULL);
	cmd_bind(&b, "default", "gone", "node-2", NULL);
	cmd_bind(&b, "default", "b", "node-2", "00000000-0000-4000-8000-000000000000");
	cmd_bind(&b, "default", "b", "Node_2", NULL);
	entry_done(&b, s, 6, &seq, "e6-bind.mp");

	/* An empty entry is valid too. */
	entry_done(&b, s, 7, &seq, "e7-empty.mp");
	put("fuzz_apply", "sequence.mp", seq.data, seq.len);

	aep_buf_free(&seq);
	aep_batch_free(&b);
	aep_store_free(s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: aep-fuzz-mkcorpus DIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
		die(outdir, strerror(errno));
	do_manifests();
	do_rpc();
	do_entries();
	for (size_t i = 0; i < nobjs; i++)
		aep_object_unref(objs[i]);
	return 0;
}
