/* /livez, /readyz and /metrics (Prometheus text format) over plain HTTP,
 * served by libmicrohttpd on its own thread. The thread only reads the
 * figures the loop thread publishes every 100 ms (master__publish_metrics)
 * under m->metrics.lock; it never touches the store or Raft. */
#include "master/master-int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

static const char *const method_names[] = {
#define MASTER__M_NAME(e, s, w) s,
    MASTER_METHODS(MASTER__M_NAME)
#undef MASTER__M_NAME
};

static const char *const bucket_labels[] = {
#define MASTER__BLABEL(b) #b,
    MASTER_BUCKETS(MASTER__BLABEL)
#undef MASTER__BLABEL
};

static void gauge(struct aep_buf *b, const char *name, const char *help, const char *type,
		  const char *master, unsigned long long v)
{
	aep_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{master=\"%s\"} %llu\n", name, help, name,
		       type, name, master, v);
}

static void render_metrics(struct master *m, struct aep_buf *b)
{
	struct master_metrics *x = &m->metrics;
	const char *n = m->name;
	pthread_mutex_lock(&x->lock);
	gauge(b, "aep_raft_term", "Current Raft term.", "gauge", n, x->raft.term);
	gauge(b, "aep_raft_commit_index", "Highest Raft index known committed.", "gauge", n,
	      x->raft.commit_index);
	gauge(b, "aep_raft_applied_index", "Highest Raft index applied to the store.", "gauge", n,
	      x->raft.applied_index);
	gauge(b, "aep_raft_last_index", "Last Raft index in the local log.", "gauge", n,
	      x->raft.last_index);
	gauge(b, "aep_raft_is_leader", "1 when this master is the Raft leader.", "gauge", n,
	      x->raft.leader ? 1 : 0);
	aep_buf_printf(b, "# HELP aep_raft_leader The master this one sees as leader (value 1).\n"
			  "# TYPE aep_raft_leader gauge\n");
	if (x->leader_name[0] != '\0')
		aep_buf_printf(b, "aep_raft_leader{master=\"%s\",leader=\"%s\"} 1\n", n,
			       x->leader_name);
	gauge(b, "aep_raft_entries_applied_total", "Raft entries applied since start.", "counter",
	      n, x->raft.entries_applied);
	gauge(b, "aep_raft_commands_applied_total",
	      "Commands applied since start (many per entry with group commit).", "counter", n,
	      x->raft.commands_applied);
	gauge(b, "aep_raft_snapshots_taken_total", "Snapshots taken since start.", "counter", n,
	      x->raft.snapshots_taken);
	gauge(b, "aep_raft_snapshots_installed_total", "Snapshots installed since start.",
	      "counter", n, x->raft.snapshots_installed);
	aep_buf_printf(b, "# HELP aep_raft_disk_append_seconds Appends to the local Raft log "
			  "(write and fsync).\n# TYPE aep_raft_disk_append_seconds histogram\n");
	for (int j = 0; j < AEP_RAFT_DISK_NBUCKETS; j++)
		aep_buf_printf(
		    b, "aep_raft_disk_append_seconds_bucket{master=\"%s\",le=\"%g\"} %llu\n", n,
		    AEP_RAFT_DISK_BUCKETS_MS[j] / 1000.0,
		    (unsigned long long)x->raft.disk_buckets[j]);
	aep_buf_printf(b,
		       "aep_raft_disk_append_seconds_bucket{master=\"%s\",le=\"+Inf\"} %llu\n"
		       "aep_raft_disk_append_seconds_sum{master=\"%s\"} %.6f\n"
		       "aep_raft_disk_append_seconds_count{master=\"%s\"} %llu\n",
		       n, (unsigned long long)x->raft.disk_appends, n, x->raft.disk_seconds, n,
		       (unsigned long long)x->raft.disk_appends);
	gauge(b, "aep_store_revision", "Revision of the last applied change.", "gauge", n,
	      x->revision);
	aep_buf_printf(b, "# HELP aep_store_objects Objects in the store by kind.\n"
			  "# TYPE aep_store_objects gauge\n");
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		aep_buf_printf(b, "aep_store_objects{master=\"%s\",kind=\"%s\"} %llu\n", n,
			       aep_kind_info((enum aep_kind)k)->name,
			       (unsigned long long)x->objects[k]);
	gauge(b, "aep_watches", "Active watches on this master.", "gauge", n, x->watches);
	gauge(b, "aep_scheduler_bindings_total", "Pods bound by this master's scheduler.",
	      "counter", n, x->sched_bound);
	gauge(b, "aep_scheduler_bindings_refused_total",
	      "Bindings the store refused (pod deleted, re-created or already bound).", "counter",
	      n, x->sched_refused);
	gauge(b, "aep_scheduler_failures_total", "Placement attempts that found no node.",
	      "counter", n, x->sched_failed);
	gauge(b, "aep_scheduler_events_skipped_total",
	      "FailedScheduling events not written because of the event rate limit.", "counter", n,
	      x->sched_events_skipped);
	gauge(b, "aep_scheduler_queued", "Pods waiting for a node (leader only).", "gauge", n,
	      x->sched_queued);
	aep_buf_printf(b, "# HELP aep_api_requests_total API requests by method.\n"
			  "# TYPE aep_api_requests_total counter\n");
	for (int i = 0; i < MASTER_M__COUNT; i++)
		aep_buf_printf(b, "aep_api_requests_total{master=\"%s\",method=\"%s\"} %llu\n", n,
			       method_names[i], (unsigned long long)x->methods[i].count);
	aep_buf_printf(b, "# HELP aep_api_request_errors_total API requests answered with an "
			  "error, by method.\n# TYPE aep_api_request_errors_total counter\n");
	for (int i = 0; i < MASTER_M__COUNT; i++)
		aep_buf_printf(b,
			       "aep_api_request_errors_total{master=\"%s\",method=\"%s\"} %llu\n",
			       n, method_names[i], (unsigned long long)x->methods[i].errors);
	aep_buf_printf(b, "# HELP aep_api_request_duration_seconds API request latency.\n"
			  "# TYPE aep_api_request_duration_seconds histogram\n");
	for (int i = 0; i < MASTER_M__COUNT; i++) {
		const struct master_method_stats *st = &x->methods[i];
		for (int j = 0; j < MASTER_NBUCKETS; j++)
			aep_buf_printf(
			    b,
			    "aep_api_request_duration_seconds_bucket{master=\"%s\",method="
			    "\"%s\",le=\"%s\"} %llu\n",
			    n, method_names[i], bucket_labels[j],
			    (unsigned long long)st->buckets[j]);
		aep_buf_printf(
		    b,
		    "aep_api_request_duration_seconds_bucket{master=\"%s\",method=\"%s\","
		    "le=\"+Inf\"} %llu\n"
		    "aep_api_request_duration_seconds_sum{master=\"%s\",method=\"%s\"} %.6f\n"
		    "aep_api_request_duration_seconds_count{master=\"%s\",method=\"%s\"} "
		    "%llu\n",
		    n, method_names[i], (unsigned long long)st->count, n, method_names[i],
		    st->sum_s, n, method_names[i], (unsigned long long)st->count);
	}
	pthread_mutex_unlock(&x->lock);
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
			       struct aep_buf *body)
{
	size_t len = 0;
	char *data = aep_buf_steal(body, &len);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer_with_free_callback(len, data, aep_free);
	if (resp == NULL) {
		aep_free(data);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_size, void **con_cls)
{
	struct master *m = cls;
	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)con_cls;
	struct aep_buf body;
	aep_buf_init(&body);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		aep_buf_printf(&body, "method not allowed\n");
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", &body);
	}
	if (strcmp(url, "/livez") == 0) {
		aep_buf_printf(&body, "ok\n");
		return respond(conn, MHD_HTTP_OK, "text/plain", &body);
	}
	if (strcmp(url, "/readyz") == 0) {
		pthread_mutex_lock(&m->metrics.lock);
		bool ready = m->metrics.ready;
		pthread_mutex_unlock(&m->metrics.lock);
		aep_buf_printf(&body,
			       ready ? "ok\n" : "not ready: no leader or still catching up\n");
		return respond(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
			       "text/plain", &body);
	}
	if (strcmp(url, "/metrics") == 0) {
		render_metrics(m, &body);
		if (body.failed) {
			aep_buf_free(&body);
			return MHD_NO;
		}
		return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", &body);
	}
	aep_buf_printf(&body, "not found\n");
	return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", &body);
}

int master__http_start(struct master *m, struct aep_error *e)
{
	struct sockaddr_storage ss;
	if (aep_addr_parse(m->http, &ss, e) != 0)
		return e->code;
	struct MHD_Daemon *d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
		(ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, handler, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (d == NULL)
		return aep_errorf(e, AEP_EIO, "cannot listen (address in use?)");
	m->httpd = d;
	return 0;
}

void master__http_stop(struct master *m)
{
	if (m->httpd != NULL) {
		MHD_stop_daemon(m->httpd);
		m->httpd = NULL;
	}
}
