/* The image store: root file systems at DIR/images/NAME/rootfs, imported
 * from tarballs with libarchive (Debian's libarchive-dev), which knows
 * every tar dialect and compression and does the careful extraction
 * (ownership, modes, times, hard links, refusing to write through
 * symlinks) that a hand-written tar reader would get wrong.
 *
 * An import extracts into DIR/images/.tmp-NAME-PID and renames the result
 * into place, so readers see a whole image or none. */
#include "node/node-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

bool aep_image_exists(const char *dir, const char *name)
{
	char img[NODE__PATH_MAX], rootfs[NODE__PATH_MAX];
	struct aep_error e;
	struct stat st;

	return node__image_dir(dir, name, img, &e) == 0 &&
	       node__path(rootfs, &e, "%s/rootfs", img) == 0 && stat(rootfs, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* Reduce an entry's path to a clean relative one ("./bin/sh" -> "bin/sh",
 * "/etc" -> "etc"); false for ".." components. */
static bool clean_rel(const char *in, char *out, size_t size)
{
	size_t o = 0;

	while (*in != '\0') {
		const char *end = strchr(in, '/');
		size_t len = end ? (size_t)(end - in) : strlen(in);
		if (len == 2 && in[0] == '.' && in[1] == '.')
			return false;
		if (len > 0 && !(len == 1 && in[0] == '.')) {
			if (o + len + 2 > size)
				return false;
			if (o > 0)
				out[o++] = '/';
			memcpy(out + o, in, len);
			o += len;
		}
		in += len;
		if (*in == '/')
			in++;
	}
	out[o] = '\0';
	return true;
}

static int extract(const char *file, const char *root, struct aep_error *e)
{
	struct archive *a = archive_read_new(), *w = archive_write_disk_new();
	struct archive_entry *ent;
	char rel[PATH_MAX], full[NODE__PATH_MAX];
	int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_OWNER |
		    ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
		    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK;
	int rc = 0, r;

	if (a == NULL || w == NULL) {
		rc = aep_errorf(e, AEP_ENOMEM, "libarchive: out of memory");
		goto out;
	}
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	archive_write_disk_set_options(w, flags);
	archive_write_disk_set_standard_lookup(w);
	if (archive_read_open_filename(a, file, 65536) != ARCHIVE_OK) {
		rc = aep_errorf(e, AEP_EIO, "%s: %s", file, archive_error_string(a));
		goto out;
	}
	while ((r = archive_read_next_header(a, &ent)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(ent);
		const char *hl = archive_entry_hardlink(ent);
		if (name == NULL || !clean_rel(name, rel, sizeof(rel))) {
			rc = aep_errorf(e, AEP_EINVALID, "%s: entry %s: bad path", file,
					name ? name : "(none)");
			goto out;
		}
		if (rel[0] == '\0')
			continue; /* "./" itself */
		if (node__path(full, e, "%s/%s", root, rel) != 0)
			goto out_rc;
		archive_entry_copy_pathname(ent, full);
		if (hl != NULL) {
			if (!clean_rel(hl, rel, sizeof(rel)) || rel[0] == '\0') {
				rc = aep_errorf(e, AEP_EINVALID, "%s: link %s: bad target", file,
						hl);
				goto out;
			}
			if (node__path(full, e, "%s/%s", root, rel) != 0)
				goto out_rc;
			archive_entry_copy_hardlink(ent, full);
		}
		if (archive_write_header(w, ent) != ARCHIVE_OK) {
			rc = aep_errorf(e, AEP_EINVALID, "%s: %s: %s", file, name,
					archive_error_string(w));
			goto out;
		}
		if (archive_entry_size(ent) > 0) {
			const void *buf;
			size_t size;
			la_int64_t off;
			while ((r = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
				if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK) {
					rc = aep_errorf(e, AEP_EIO, "%s: %s: %s", file, name,
							archive_error_string(w));
					goto out;
				}
			}
			if (r != ARCHIVE_EOF) {
				rc = aep_errorf(e, AEP_EIO, "%s: %s: %s", file, name,
						archive_error_string(a));
				goto out;
			}
		}
		if (archive_write_finish_entry(w) != ARCHIVE_OK) {
			rc = aep_errorf(e, AEP_EIO, "%s: %s: %s", file, name,
					archive_error_string(w));
			goto out;
		}
	}
	if (r != ARCHIVE_EOF)
		rc = aep_errorf(e, AEP_EIO, "%s: %s", file, archive_error_string(a));
	else if (archive_write_close(w) != ARCHIVE_OK)
		rc = aep_errorf(e, AEP_EIO, "%s: %s", file, archive_error_string(w));
	goto out;
out_rc:
	rc = e->code;
out:
	if (a != NULL)
		archive_read_free(a);
	if (w != NULL)
		archive_write_free(w);
	return rc;
}

int aep_image_load(const char *dir, const char *name, const char *file, struct aep_error *e)
{
	char img[NODE__PATH_MAX], tmp[NODE__PATH_MAX], root[NODE__PATH_MAX], base[NODE__PATH_MAX];
	char *real;
	int rc;

	/* SECURE_SYMLINKS checks every component, the store's own path too:
	 * work on its real path. */
	if (node__path(base, e, "%s/images", dir) != 0 || node__mkdir_p(base, 0755, e) != 0)
		return aep_error_prefix(e, "image %s", name);
	real = realpath(base, NULL);
	if (real == NULL)
		return aep_errorf(e, AEP_EIO, "image %s: %s: %s", name, base, strerror(errno));
	rc = node__image_dir(dir, name, img, e);
	if (rc == 0)
		rc = node__path(tmp, e, "%s/.tmp-%s-%ld", real, strrchr(img, '/') + 1,
				(long)getpid());
	if (rc == 0)
		rc = node__path(img, e, "%s%s", real, strrchr(img, '/'));
	free(real);
	if (rc != 0)
		return aep_error_prefix(e, "image %s", name);
	if (node__exists(img))
		return aep_errorf(e, AEP_EEXISTS, "image %s: already loaded", name);
	node__rm_rf(tmp, e);
	/* On failure @e holds the error; err_after_tmp returns its code. */
	if (node__path(root, e, "%s/rootfs", tmp) != 0 || node__mkdir_p(root, 0755, e) != 0)
		goto err_after_tmp;
	if (extract(file, root, e) != 0)
		goto err_after_tmp;
	if (rename(tmp, img) != 0) {
		aep_errorf(e, errno == ENOTEMPTY || errno == EEXIST ? AEP_EEXISTS : AEP_EIO,
			   "rename %s: %s", img, strerror(errno));
		goto err_after_tmp;
	}
	return 0;

err_after_tmp : {
	struct aep_error ignore;
	node__rm_rf(tmp, &ignore);
}
	return aep_error_prefix(e, "image %s", name);
}

/* ---- the busybox test image --------------------------------------------- */

static int add_entry(struct archive *a, const char *path, mode_t type, mode_t perm,
		     const char *link, const void *data, size_t len, struct aep_error *e)
{
	struct archive_entry *ent = archive_entry_new();
	int rc = 0;

	if (ent == NULL)
		return aep_errorf(e, AEP_ENOMEM, "libarchive: out of memory");
	archive_entry_set_pathname(ent, path);
	archive_entry_set_filetype(ent, type);
	archive_entry_set_perm(ent, perm);
	archive_entry_set_uid(ent, 0);
	archive_entry_set_gid(ent, 0);
	archive_entry_set_mtime(ent, 1700000000, 0);
	if (link != NULL)
		archive_entry_set_symlink(ent, link);
	archive_entry_set_size(ent, (la_int64_t)len);
	if (archive_write_header(a, ent) != ARCHIVE_OK ||
	    (len > 0 && archive_write_data(a, data, len) != (la_ssize_t)len))
		rc = aep_errorf(e, AEP_EIO, "%s: %s", path, archive_error_string(a));
	archive_entry_free(ent);
	return rc;
}

int aep_image_build_busybox(const char *file, const char *busybox, struct aep_error *e)
{
	static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n"
				     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
	static const char group[] = "root:x:0:\nnogroup:x:65534:\n";
	static const char index_html[] = "hello from aep\n";
	static const char *const dirs[] = {"bin", "dev", "etc",	    "proc", "root",
					   "sys", "usr", "usr/bin", "www",  NULL};
	struct aep_buf bin, list;
	struct archive *a;
	int rc, status;

	if (busybox == NULL)
		busybox = "/bin/busybox";
	aep_buf_init(&bin);
	aep_buf_init(&list);
	if ((rc = node__read_file(busybox, 64 * 1024 * 1024, &bin, e)) != 0)
		goto out_bufs;
	const char *argv[] = {busybox, "--list", NULL};
	if ((rc = node__run(argv, &list, &status, e)) != 0)
		goto out_bufs;
	if (status != 0 || list.len == 0 || aep_buf_append(&list, "", 1) != 0) {
		rc = aep_errorf(e, AEP_EIO, "%s --list: exit %d", busybox, status);
		goto out_bufs;
	}
	a = archive_write_new();
	if (a == NULL) {
		rc = aep_errorf(e, AEP_ENOMEM, "libarchive: out of memory");
		goto out_bufs;
	}
	archive_write_set_format_pax_restricted(a);
	if (archive_write_open_filename(a, file) != ARCHIVE_OK) {
		rc = aep_errorf(e, AEP_EIO, "%s: %s", file, archive_error_string(a));
		goto out_archive;
	}
	for (int i = 0; rc == 0 && dirs[i] != NULL; i++)
		rc = add_entry(a, dirs[i], AE_IFDIR, 0755, NULL, NULL, 0, e);
	if (rc == 0)
		rc = add_entry(a, "tmp", AE_IFDIR, 01777, NULL, NULL, 0, e);
	if (rc == 0)
		rc = add_entry(a, "bin/busybox", AE_IFREG, 0755, NULL, bin.data, bin.len, e);
	for (char *save = NULL, *t = strtok_r(list.data, "\n", &save); rc == 0 && t != NULL;
	     t = strtok_r(NULL, "\n", &save)) {
		char path[256];
		if (strcmp(t, "busybox") == 0 || strchr(t, '/') != NULL || strlen(t) > 200)
			continue;
		snprintf(path, sizeof(path), "bin/%s", t);
		rc = add_entry(a, path, AE_IFLNK, 0777, "busybox", NULL, 0, e);
	}
	if (rc == 0)
		rc = add_entry(a, "usr/bin/env", AE_IFLNK, 0777, "../../bin/busybox", NULL, 0, e);
	if (rc == 0)
		rc =
		    add_entry(a, "etc/passwd", AE_IFREG, 0644, NULL, passwd, sizeof(passwd) - 1, e);
	if (rc == 0)
		rc = add_entry(a, "etc/group", AE_IFREG, 0644, NULL, group, sizeof(group) - 1, e);
	if (rc == 0)
		rc = add_entry(a, "www/index.html", AE_IFREG, 0644, NULL, index_html,
			       sizeof(index_html) - 1, e);
	if (archive_write_close(a) != ARCHIVE_OK && rc == 0)
		rc = aep_errorf(e, AEP_EIO, "%s: %s", file, archive_error_string(a));
out_archive:
	archive_write_free(a);
	if (rc != 0)
		unlink(file);
out_bufs:
	aep_buf_free(&bin);
	aep_buf_free(&list);
	return rc == 0 ? 0 : aep_error_prefix(e, "busybox image");
}
