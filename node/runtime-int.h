/* node: the runtime's objects, shared by runtime.c and io.c. */
#ifndef AEP_NODE_RUNTIME_INT_H
#define AEP_NODE_RUNTIME_INT_H

#include "node/node-int.h"

#define NODE__CTR_MAX 64 /* containers in one pod */

enum node__policy { NODE__ALWAYS, NODE__ON_FAILURE, NODE__NEVER };

/* Where a container's current run is, as the runtime tracks it. */
enum node__run {
	NODE__RUN_IDLE,	    /* not started, or between runs (backoff) */
	NODE__RUN_STARTING, /* monitor spawned, no pid file yet */
	NODE__RUN_RUNNING,  /* pid file there, no exit file yet */
	NODE__RUN_EXITED,   /* exit file read */
};

struct node__pod;

struct node__ctr {
	struct node__pod *pod;
	char name[64];
	char image[AEP_IMAGE_NAME_MAX + 1];
	bool read_only_root;
	char id[AEP_CTR_ID_MAX];
	char dir[NODE__PATH_MAX]; /* DIR/pods/UID/c/NAME */
	enum node__run run;
	enum aep_ctr_state state;
	char reason[32];
	int exit_code;
	bool has_run;
	unsigned restarts;
	int64_t started_ns, finished_ns;
	uint64_t backoff_ms; /* the next restart's delay */
	bool busy;	     /* a start job in flight */
	uv_fs_event_t ev;    /* inotify on dir: pid and exit files */
	bool ev_on;
	uv_timer_t timer; /* backoff */
	struct node__mon *mon;
};

/* A monitor process that this runtime spawned (adopted ones are not our
 * children: their end shows only as the exit file). */
struct node__mon {
	uv_process_t proc;
	struct node__pod *pod;
	struct node__ctr *c; /* NULL once the container forgot it */
};

struct node__killer {
	struct node__killer *next;
	aep_kill_cb cb;
	void *data;
};

struct node__pod {
	struct node__pod *next, *prev;
	struct aep_runtime *rt;
	char uid[40];
	char ns[64];
	char name[AEP_NAME_MAX + 1];
	int64_t generation;
	struct aep_object *obj;
	enum node__policy policy;
	int64_t grace_ms;
	char ip[16], veth[16];
	char dir[NODE__PATH_MAX];   /* DIR/pods/UID */
	char netns[NODE__PATH_MAX]; /* DIR/netns/UID */
	enum aep_pod_phase phase;
	char message[160];
	int64_t start_ns;
	bool sandbox;	  /* network and bundles are ready */
	bool killing;	  /* aep_runtime_pod_kill was called */
	bool term_sent;	  /* the grace period runs */
	bool teardown;	  /* the teardown job was queued */
	bool listed;	  /* in rt->pods */
	unsigned busy;	  /* jobs in flight */
	unsigned holds;	  /* open handles (timers, fs events, monitors) */
	uv_timer_t timer; /* sandbox retry; grace period and SIGKILL repeats */
	uint64_t sandbox_backoff_ms;
	struct node__killer *killers;
	struct aep_pod_status *last; /* last status reported */
	size_t nctr;
	struct node__ctr ctrs[];
};

struct node__io; /* a logs or exec request in flight (io.c) */

struct aep_runtime {
	uv_loop_t *loop;
	char dir[NODE__PATH_MAX];
	char runtime[NODE__PATH_MAX]; /* program */
	char runtime_name[16];	      /* "crun" or "runc" for container ids */
	char oci_root[NODE__PATH_MAX];
	char id_prefix[33];
	uint64_t backoff_base_ms, backoff_max_ms;
	int64_t grace_ms;
	aep_pod_status_cb status_cb;
	void *data;
	struct node__net net;
	struct node__pod *pods; /* doubly linked, listed pods */
	unsigned pending;	/* jobs and io requests not yet returned */
	unsigned npods;		/* pods not yet freed */
	struct node__io *ios;	/* logs and exec requests in flight */
	bool closing;
	bool adopted;
	aep_close_cb close_cb;
	void *close_data;
};

struct node__pod *node__pod_find(struct aep_runtime *rt, const char *uid);
struct node__ctr *node__ctr_find(struct node__pod *p, const char *name);
/* The runtime's count of outstanding work went to zero: maybe finish a close. */
void node__rt_maybe_free(struct aep_runtime *rt);
/* io.c: cancel every logs and exec request (at close). */
void node__io_cancel_all(struct aep_runtime *rt);

#endif /* AEP_NODE_RUNTIME_INT_H */
