/* What AEP puts inside libraft's entries and snapshots.
 *
 * Entries: libraft 0.15 writes entries whose length is not a multiple of 8
 * into its segment files padded, but reads them back unpadded, finds the
 * next batch misaligned and discards the whole segment as corrupt at the
 * next start (docs/LIBRAFT.md, bug 1). So every entry is 8-byte aligned: a
 * header (the magic "AEP1", then the batch's length as 32-bit little
 * endian), the batch (state.h's msgpack array of commands), zero padding.
 *
 * Snapshots: "AEPSNAP1", then aep_store_snapshot()'s bytes. The store's
 * snapshot is an lz4 frame, and libraft 0.15 decompresses any snapshot file
 * that starts with the lz4 magic when it loads it, even with its own
 * compression turned off (docs/LIBRAFT.md, bug 2): the prefix keeps the
 * bytes ours.
 *
 * raft.c and the simulation in tests/sim/ both use these, so that the sim
 * replicates exactly the bytes a real peer does. */
#include "raft/raft-int.h"

#include <stdint.h>
#include <string.h>

#define ENTRY_HDR 8
static const char entry_magic[4] = {'A', 'E', 'P', '1'};

#define SNAP_HDR 8
static const char snap_magic[SNAP_HDR] = {'A', 'E', 'P', 'S', 'N', 'A', 'P', '1'};

int raft__entry_frame(const char *data, size_t len, struct raft_buffer *out)
{
	unsigned char *h;

	if (len > UINT32_MAX - 2 * ENTRY_HDR)
		return RAFT_TOOBIG;
	out->len = ENTRY_HDR + ((len + 7) & ~(size_t)7);
	out->base = raft_malloc(out->len);
	if (out->base == NULL)
		return RAFT_NOMEM;
	h = out->base;
	memcpy(h, entry_magic, sizeof(entry_magic));
	for (int i = 0; i < 4; i++)
		h[4 + i] = (unsigned char)(len >> (8 * i));
	memcpy(h + ENTRY_HDR, data, len);
	memset(h + ENTRY_HDR + len, 0, out->len - ENTRY_HDR - len);
	return 0;
}

bool raft__entry_unframe(const struct raft_buffer *buf, const char **data, size_t *len)
{
	const unsigned char *h = buf->base;
	size_t n = 0;

	if (buf->len < ENTRY_HDR || memcmp(h, entry_magic, sizeof(entry_magic)) != 0)
		return false;
	for (int i = 0; i < 4; i++)
		n |= (size_t)h[4 + i] << (8 * i);
	if (n > buf->len - ENTRY_HDR)
		return false;
	*data = (const char *)h + ENTRY_HDR;
	*len = n;
	return true;
}

int raft__snapshot_frame(const char *data, size_t len, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct raft_buffer *out;

	if (len > SIZE_MAX - SNAP_HDR)
		return RAFT_NOMEM;
	out = raft_malloc(sizeof(*out));
	if (out == NULL)
		return RAFT_NOMEM;
	out->len = SNAP_HDR + len;
	out->base = raft_malloc(out->len);
	if (out->base == NULL)
		goto err_after_out;
	memcpy(out->base, snap_magic, SNAP_HDR);
	memcpy((char *)out->base + SNAP_HDR, data, len);
	*bufs = out;
	*n_bufs = 1;
	return 0;

err_after_out:
	raft_free(out);
	return RAFT_NOMEM;
}

bool raft__snapshot_unframe(const struct raft_buffer *buf, const char **data, size_t *len)
{
	if (buf->len < SNAP_HDR || memcmp(buf->base, snap_magic, SNAP_HDR) != 0)
		return false;
	*data = (const char *)buf->base + SNAP_HDR;
	*len = buf->len - SNAP_HDR;
	return true;
}

void raft__buffers_free(struct raft_buffer *bufs[], unsigned *n_bufs)
{
	if (*bufs != NULL) {
		for (unsigned i = 0; i < *n_bufs; i++)
			raft_free((*bufs)[i].base);
		raft_free(*bufs);
	}
	*bufs = NULL;
	*n_bufs = 0;
}
