/* The event log and watches.
 *
 * Every change that aep_store_apply() makes is appended to a ring of the
 * last event_log_max events, then handed, synchronously, to each watcher
 * whose kind, namespace and selector it matches. A new watch first replays
 * the events after its from_rv that the ring still holds; if the ring has
 * already dropped one of them the watch is refused with AEP_EEXPIRED and
 * the client lists again.
 *
 * Selectors follow Kubernetes: a MODIFIED event whose object moves into a
 * watcher's selector reaches it as ADDED, one that moves out as DELETED
 * (carrying the object as it now is, labels that no longer match, and the
 * event's revision); a DELETED event matches on the deleted object's
 * labels.
 *
 * Watchers may unwatch themselves or each other and start new watches from
 * inside their callbacks: an unwatch during a callback only marks the
 * watcher, which is freed once the outermost callback returns, and every
 * watcher remembers the last revision it was given so that no event
 * reaches it twice. Callbacks must not apply entries. */
#include "state/store-int.h"

#include <string.h>

const char *aep_event_type_name(enum aep_event_type t)
{
	switch (t) {
	case AEP_EV_ADDED: return "ADDED";
	case AEP_EV_MODIFIED: return "MODIFIED";
	case AEP_EV_DELETED: return "DELETED";
	}
	return "UNKNOWN";
}

/* ---- watchers ----------------------------------------------------------- */

static void watcher_unlink_free(struct aep_store *s, struct aep_watch *w)
{
	struct state__watchers *ws = &s->watchers;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		ws->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		ws->tail = w->prev;
	if (w->sel != NULL)
		aep_selector_free(w->sel);
	aep_free(w->ns);
	aep_free(w);
}

/* Free the watchers unwatched during callbacks, once none is running. */
static void sweep(struct aep_store *s)
{
	struct state__watchers *ws = &s->watchers;
	if (ws->dispatching > 0 || !ws->has_dead)
		return;
	struct aep_watch *w = ws->head;
	while (w != NULL) {
		struct aep_watch *next = w->next;
		if (w->dead)
			watcher_unlink_free(s, w);
		w = next;
	}
	ws->has_dead = false;
}

static bool sel_matches(const struct aep_watch *w, const struct aep_object *o)
{
	return w->sel == NULL || aep_selector_matches(w->sel, o->meta.labels, o->meta.nlabels);
}

/* Hand @ev to @w as @w sees it, if it sees it at all. */
static void deliver(struct aep_watch *w, const struct state__event *ev)
{
	const struct aep_object *o = ev->obj;
	if (w->dead || w->expired || ev->rv <= w->seen_rv)
		return;
	w->seen_rv = ev->rv;
	if (o->kind != w->kind)
		return;
	if (w->ns != NULL && strcmp(o->meta.ns, w->ns) != 0)
		return;
	enum aep_event_type type = ev->type;
	if (type == AEP_EV_MODIFIED && w->sel != NULL) {
		bool was = ev->prev != NULL && sel_matches(w, ev->prev);
		bool is = sel_matches(w, o);
		if (!was && !is)
			return;
		if (!was)
			type = AEP_EV_ADDED;
		else if (!is)
			type = AEP_EV_DELETED;
	} else if (!sel_matches(w, o)) {
		return;
	}
	struct aep_event out = {type, ev->rv, ev->obj, type == AEP_EV_MODIFIED ? ev->prev : NULL};
	w->cb(&out, w->data);
}

static void dispatch(struct aep_store *s, const struct state__event *ev)
{
	struct state__watchers *ws = &s->watchers;
	ws->dispatching++;
	/* Watchers added by a callback join at the tail; their seen_rv keeps
	 * this event from reaching them twice. */
	for (struct aep_watch *w = ws->head; w != NULL; w = w->next)
		deliver(w, ev);
	ws->dispatching--;
	sweep(s);
}

/* ---- the log ------------------------------------------------------------ */

static struct state__event *log_at(struct state__log *l, size_t i)
{
	return &l->ring[(l->head + i) % l->cap];
}

static void event_release(struct state__event *ev)
{
	if (ev->obj != NULL)
		aep_object_unref(ev->obj);
	if (ev->prev != NULL)
		aep_object_unref(ev->prev);
	memset(ev, 0, sizeof(*ev));
}

void state__log_push(struct aep_store *s, const struct state__event *ev)
{
	struct state__log *l = &s->log;
	if (l->len == l->cap) {
		struct state__event *oldest = log_at(l, 0);
		l->floor = oldest->rv;
		event_release(oldest);
		l->head = (l->head + 1) % l->cap;
		l->len--;
	}
	struct state__event *slot = log_at(l, l->len);
	*slot = *ev;
	l->len++;
	dispatch(s, slot);
}

void state__log_reset(struct aep_store *s, uint64_t floor)
{
	struct state__log *l = &s->log;
	for (size_t i = 0; i < l->len; i++)
		event_release(log_at(l, i));
	l->head = 0;
	l->len = 0;
	l->floor = floor;
}

/* The position of the first event with rv > @rv (l->len when none). */
static size_t log_after(struct state__log *l, uint64_t rv)
{
	size_t lo = 0, hi = l->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (log_at(l, mid)->rv <= rv)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- watches ------------------------------------------------------------ */

/* @sel belongs to the store from the call on: it is freed with the watch,
 * or before returning when the watch is refused. */
int aep_store_watch(struct aep_store *s, enum aep_kind kind, const char *ns,
		    struct aep_selector *sel, uint64_t from_rv, aep_watch_cb cb, void *data,
		    struct aep_watch **out, struct aep_error *e)
{
	struct state__watchers *ws = &s->watchers;
	struct aep_watch *w;
	int rv;

	if ((unsigned)kind >= AEP_KIND__COUNT || cb == NULL) {
		rv = aep_errorf(e, AEP_EINVALID, "watch: unknown kind %d", (int)kind);
		goto err_free_sel;
	}
	if (from_rv != 0 && from_rv < s->log.floor) {
		rv = aep_errorf(e, AEP_EEXPIRED, "too old resource version: %llu (%llu)",
				(unsigned long long)from_rv, (unsigned long long)s->log.floor);
		goto err_free_sel;
	}
	w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		goto err_nomem;
	const struct aep_kind_info *ki = aep_kind_info(kind);
	if (ns != NULL && ki != NULL && ki->namespaced) {
		w->ns = aep_strdup(ns);
		if (w->ns == NULL)
			goto err_after_alloc;
	}
	if (sel != NULL && aep_selector_empty(sel)) {
		aep_selector_free(sel);
		sel = NULL;
	}
	w->store = s;
	w->kind = kind;
	w->sel = sel;
	w->cb = cb;
	w->data = data;
	w->seen_rv = from_rv;
	w->prev = ws->tail;
	if (ws->tail != NULL)
		ws->tail->next = w;
	else
		ws->head = w;
	ws->tail = w;

	if (from_rv != 0) {
		struct state__log *l = &s->log;
		ws->dispatching++;
		for (size_t i = log_after(l, from_rv); i < l->len && !w->dead; i++)
			deliver(w, log_at(l, i));
		ws->dispatching--;
	}
	if (w->seen_rv < s->revision)
		w->seen_rv = s->revision;
	*out = w;
	sweep(s);
	return 0;

err_after_alloc:
	aep_free(w);
err_nomem:
	rv = aep_errorf(e, AEP_ENOMEM, "watch: out of memory");
err_free_sel:
	if (sel != NULL)
		aep_selector_free(sel);
	return rv;
}

void aep_store_unwatch(struct aep_store *s, struct aep_watch *w)
{
	if (w == NULL || w->dead)
		return;
	if (s->watchers.dispatching > 0) {
		w->dead = true;
		s->watchers.has_dead = true;
		return;
	}
	watcher_unlink_free(s, w);
}

void state__watch_expire_all(struct aep_store *s)
{
	struct state__watchers *ws = &s->watchers;
	ws->dispatching++;
	for (struct aep_watch *w = ws->head; w != NULL; w = w->next) {
		if (w->dead || w->expired)
			continue;
		w->expired = true;
		w->cb(NULL, w->data);
	}
	ws->dispatching--;
	sweep(s);
}

void state__watch_free_all(struct aep_store *s)
{
	while (s->watchers.head != NULL)
		watcher_unlink_free(s, s->watchers.head);
	s->watchers.has_dead = false;
}
