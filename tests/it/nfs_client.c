/*
 * A long-lived NFSv4 client for tests/it/nfs.rs (docs/nfs.md, "What handles survive").
 *
 * Unlike nfs-cat, which mounts afresh for every file, this client mounts once and keeps its
 * handles, as a kernel NFS client does: it opens a file (libnfs's nfs_open: an NFSv4 OPEN, so a
 * file handle and an open stateid) and takes a directory's file handle (PUTROOTFH, LOOKUP...,
 * GETFH), reads both, then waits for a line on stdin while the test restarts imgfs under the
 * running server. Then it reads again through the SAME handles, and also looks the same paths up
 * afresh in the same libnfs context. One line per outcome, so the test can assert exactly what
 * happened:
 *
 *   <phase> <probe>: ok <bytes or entries> <sha256>
 *   <phase> <probe>: error <libnfs's message, or the NFSv4 status name>
 *
 * Probes, each run before and after the restart: "file-handle read" (nfs_pread on the open file),
 * "file-handle getattr" (nfs_fstat64 on it), "dir-handle readdir" (PUTFH + READDIR with the
 * directory's handle), "path open+read" (nfs_open by path: libnfs starts from the export's root
 * handle it kept at mount), "path lookup+readdir" (PUTROOTFH + LOOKUPs from the server's root).
 * "ready" (after the first phase) and "done" (at the end) frame the output.
 *
 * usage: nfs_client URL FILE DIR
 *   URL   nfs://127.0.0.1/EXPORT?version=4&nfsport=PORT (the export's root)
 *   FILE  a regular file below it (relative, no leading '/')
 *   DIR   a directory below it (relative)
 *
 * Built by the test with `cc nfs_client.c -lnfs` (libnfs-dev).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs4.h>

/* ---------------------------------------------------------------------------------------------
 * SHA-256 (FIPS 180-4), so the test can compare the bytes with the image's without a crypto
 * library in the build.
 * ------------------------------------------------------------------------------------------- */

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t fill;
};

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(struct sha256 *s, const unsigned char *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
	e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
	for (i = 0; i < 64; i++) {
		t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
	s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
	s->fill = 0;
}

static void sha256_update(struct sha256 *s, const void *data, size_t n)
{
	const unsigned char *p = data;

	s->len += n;
	while (n > 0) {
		size_t take = 64 - s->fill < n ? 64 - s->fill : n;
		memcpy(s->buf + s->fill, p, take);
		s->fill += take;
		p += take;
		n -= take;
		if (s->fill == 64) {
			sha256_block(s, s->buf);
			s->fill = 0;
		}
	}
}

/* Writes 64 hex digits and a NUL to out. */
static void sha256_hex(struct sha256 *s, char out[65])
{
	uint64_t bits = s->len * 8;
	unsigned char pad = 0x80, zero = 0, lenb[8];
	int i;

	sha256_update(s, &pad, 1);
	while (s->fill != 56)
		sha256_update(s, &zero, 1);
	for (i = 0; i < 8; i++)
		lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_update(s, lenb, 8);
	for (i = 0; i < 8; i++)
		sprintf(out + 8 * i, "%08" PRIx32, s->h[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Raw NFSv4 COMPOUNDs on the high-level context's own connection (libnfs has no call that
 * takes a directory's file handle and reads the directory through it).
 * ------------------------------------------------------------------------------------------- */

static const char *nfsstat4_name(int s)
{
	switch (s) {
	case NFS4_OK: return "NFS4_OK";
	case NFS4ERR_PERM: return "NFS4ERR_PERM";
	case NFS4ERR_NOENT: return "NFS4ERR_NOENT";
	case NFS4ERR_IO: return "NFS4ERR_IO";
	case NFS4ERR_ACCESS: return "NFS4ERR_ACCESS";
	case NFS4ERR_NOTDIR: return "NFS4ERR_NOTDIR";
	case NFS4ERR_INVAL: return "NFS4ERR_INVAL";
	case NFS4ERR_STALE: return "NFS4ERR_STALE";
	case NFS4ERR_BADHANDLE: return "NFS4ERR_BADHANDLE";
	case NFS4ERR_SERVERFAULT: return "NFS4ERR_SERVERFAULT";
	case NFS4ERR_DELAY: return "NFS4ERR_DELAY";
	case NFS4ERR_FHEXPIRED: return "NFS4ERR_FHEXPIRED";
	case NFS4ERR_WRONGSEC: return "NFS4ERR_WRONGSEC";
	case NFS4ERR_MOVED: return "NFS4ERR_MOVED";
	case NFS4ERR_NOFILEHANDLE: return "NFS4ERR_NOFILEHANDLE";
	case NFS4ERR_STALE_CLIENTID: return "NFS4ERR_STALE_CLIENTID";
	case NFS4ERR_STALE_STATEID: return "NFS4ERR_STALE_STATEID";
	case NFS4ERR_BAD_STATEID: return "NFS4ERR_BAD_STATEID";
	case NFS4ERR_EXPIRED: return "NFS4ERR_EXPIRED";
	case NFS4ERR_ADMIN_REVOKED: return "NFS4ERR_ADMIN_REVOKED";
	}
	return NULL;
}

/* "NFS4ERR_STALE", or "nfsstat4 N" for a status not in the table. */
static const char *status_text(int s)
{
	static char buf[32];
	const char *name = nfsstat4_name(s);

	if (name != NULL)
		return name;
	snprintf(buf, sizeof(buf), "nfsstat4 %d", s);
	return buf;
}

/* What a COMPOUND's callback leaves for its caller. */
struct reply {
	int done;
	/* RPC-level failure (libnfs's message), or empty. */
	char rpc_error[256];
	/* The first failing operation's status, or NFS4_OK. */
	int status;
	int failed_op;
	/* GETFH's handle. */
	char fh[NFS4_FHSIZE];
	unsigned fh_len;
	/* READDIR: the names, appended NUL-separated, and whether the listing ended. */
	char *names;
	size_t names_len, names_cap;
	unsigned entries;
	int eof;
	uint64_t last_cookie;
	verifier4 verf;
};

static void compound_cb(struct rpc_context *rpc, int status, void *data, void *private_data)
{
	struct reply *r = private_data;
	COMPOUND4res *res = data;
	unsigned i;

	r->done = 1;
	if (status != RPC_STATUS_SUCCESS) {
		snprintf(r->rpc_error, sizeof(r->rpc_error), "rpc: %s",
			 status == RPC_STATUS_ERROR ? rpc_get_error(rpc) : "cancelled or timed out");
		return;
	}
	r->status = res->status;
	for (i = 0; i < res->resarray.resarray_len; i++) {
		nfs_resop4 *op = &res->resarray.resarray_val[i];
		/* Every resop's union starts with its status (nfsstat4). */
		int st = *(nfsstat4 *)&op->nfs_resop4_u;

		if (st != NFS4_OK) {
			r->failed_op = op->resop;
			r->status = st;
			return;
		}
		if (op->resop == OP_GETFH) {
			GETFH4resok *ok = &op->nfs_resop4_u.opgetfh.GETFH4res_u.resok4;
			r->fh_len = ok->object.nfs_fh4_len;
			memcpy(r->fh, ok->object.nfs_fh4_val, r->fh_len);
		}
		if (op->resop == OP_READDIR) {
			READDIR4resok *ok = &op->nfs_resop4_u.opreaddir.READDIR4res_u.resok4;
			entry4 *e;

			memcpy(r->verf, ok->cookieverf, sizeof(verifier4));
			r->eof = ok->reply.eof;
			for (e = ok->reply.entries; e != NULL; e = e->nextentry) {
				size_t n = e->name.utf8string_len;

				if (r->names_len + n + 1 > r->names_cap) {
					r->names_cap = (r->names_len + n + 1) * 2;
					r->names = realloc(r->names, r->names_cap);
					if (r->names == NULL) {
						perror("realloc");
						exit(3);
					}
				}
				memcpy(r->names + r->names_len, e->name.utf8string_val, n);
				r->names[r->names_len + n] = '\0';
				r->names_len += n + 1;
				r->entries++;
				r->last_cookie = e->cookie;
			}
		}
	}
}

/* Sends one COMPOUND on the context's connection and services it until the reply came. */
static int run_compound(struct nfs_context *nfs, nfs_argop4 *ops, unsigned n, struct reply *r)
{
	COMPOUND4args args;

	memset(&args, 0, sizeof(args));
	args.argarray.argarray_len = n;
	args.argarray.argarray_val = ops;
	r->done = 0;
	r->rpc_error[0] = '\0';
	r->status = NFS4_OK;
	r->failed_op = 0;
	if (rpc_nfs4_compound_async(nfs_get_rpc_context(nfs), compound_cb, &args, r) != 0) {
		snprintf(r->rpc_error, sizeof(r->rpc_error), "rpc: %s", nfs_get_error(nfs));
		return -1;
	}
	while (!r->done) {
		struct pollfd pfd = { .fd = nfs_get_fd(nfs), .events = nfs_which_events(nfs) };

		if (poll(&pfd, 1, 100) < 0 && errno != EINTR) {
			snprintf(r->rpc_error, sizeof(r->rpc_error), "poll: %s", strerror(errno));
			return -1;
		}
		if (nfs_service(nfs, pfd.revents) < 0) {
			snprintf(r->rpc_error, sizeof(r->rpc_error), "rpc: %s", nfs_get_error(nfs));
			return -1;
		}
	}
	return r->rpc_error[0] == '\0' && r->status == NFS4_OK ? 0 : -1;
}

static void reply_error(const struct reply *r, char *out, size_t len)
{
	if (r->rpc_error[0] != '\0')
		snprintf(out, len, "%s", r->rpc_error);
	else
		snprintf(out, len, "%s (op %d)", status_text(r->status), r->failed_op);
}

/* PUTROOTFH, LOOKUP of each component of "/EXPORT/REL", GETFH: the directory's file handle. */
static int lookup_fh(struct nfs_context *nfs, const char *path, struct reply *r)
{
	nfs_argop4 ops[64];
	char *copy = strdup(path), *save = NULL, *c;
	unsigned n = 0;
	int rc;

	memset(ops, 0, sizeof(ops));
	ops[n++].argop = OP_PUTROOTFH;
	for (c = strtok_r(copy, "/", &save); c != NULL && n < 62; c = strtok_r(NULL, "/", &save)) {
		ops[n].argop = OP_LOOKUP;
		ops[n].nfs_argop4_u.oplookup.objname.utf8string_len = strlen(c);
		ops[n].nfs_argop4_u.oplookup.objname.utf8string_val = c;
		n++;
	}
	ops[n++].argop = OP_GETFH;
	rc = run_compound(nfs, ops, n, r);
	free(copy);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* PUTFH(fh), READDIR until eof; prints "<probe>: ok <entries> <sha256 of the sorted names, each
 * followed by a newline>" or the error. */
static void readdir_fh(struct nfs_context *nfs, const char *probe, const char *fh, unsigned fh_len)
{
	struct reply r;
	nfs_argop4 ops[2];
	char err[300], hex[65];
	uint32_t no_attrs = 0;
	int rounds = 0;

	memset(&r, 0, sizeof(r));
	do {
		memset(ops, 0, sizeof(ops));
		ops[0].argop = OP_PUTFH;
		ops[0].nfs_argop4_u.opputfh.object.nfs_fh4_len = fh_len;
		ops[0].nfs_argop4_u.opputfh.object.nfs_fh4_val = (char *)fh;
		ops[1].argop = OP_READDIR;
		ops[1].nfs_argop4_u.opreaddir.cookie = r.last_cookie;
		memcpy(ops[1].nfs_argop4_u.opreaddir.cookieverf, r.verf, sizeof(verifier4));
		ops[1].nfs_argop4_u.opreaddir.dircount = 8192;
		ops[1].nfs_argop4_u.opreaddir.maxcount = 32768;
		ops[1].nfs_argop4_u.opreaddir.attr_request.bitmap4_len = 1;
		ops[1].nfs_argop4_u.opreaddir.attr_request.bitmap4_val = &no_attrs;
		if (run_compound(nfs, ops, 2, &r) != 0) {
			reply_error(&r, err, sizeof(err));
			printf("%s: error %s\n", probe, err);
			free(r.names);
			return;
		}
	} while (!r.eof && ++rounds < 1000);

	{
		char **names = calloc(r.entries + 1, sizeof(char *));
		struct sha256 s;
		size_t off = 0;
		unsigned i;

		for (i = 0; i < r.entries; i++) {
			names[i] = r.names + off;
			off += strlen(names[i]) + 1;
		}
		qsort(names, r.entries, sizeof(char *), cmp_str);
		sha256_init(&s);
		for (i = 0; i < r.entries; i++) {
			sha256_update(&s, names[i], strlen(names[i]));
			sha256_update(&s, "\n", 1);
		}
		sha256_hex(&s, hex);
		printf("%s: ok %u %s\n", probe, r.entries, hex);
		free(names);
	}
	free(r.names);
}

/* ---------------------------------------------------------------------------------------------
 * Files through libnfs's own calls.
 * ------------------------------------------------------------------------------------------- */

/* Reads the whole file through fh from offset 0; prints "<probe>: ok <bytes> <sha256>". */
static void read_fh(struct nfs_context *nfs, const char *probe, struct nfsfh *fh)
{
	static char buf[65536];
	struct sha256 s;
	uint64_t off = 0;
	char hex[65];

	sha256_init(&s);
	for (;;) {
		int n = nfs_pread(nfs, fh, off, sizeof(buf), buf);

		if (n < 0) {
			printf("%s: error %s\n", probe, nfs_get_error(nfs));
			return;
		}
		if (n == 0)
			break;
		sha256_update(&s, buf, n);
		off += n;
	}
	sha256_hex(&s, hex);
	printf("%s: ok %" PRIu64 " %s\n", probe, off, hex);
}

static void fstat_fh(struct nfs_context *nfs, const char *probe, struct nfsfh *fh)
{
	struct nfs_stat_64 st;

	if (nfs_fstat64(nfs, fh, &st) != 0)
		printf("%s: error %s\n", probe, nfs_get_error(nfs));
	else
		printf("%s: ok size %" PRIu64 " ino %" PRIu64 "\n", probe, st.nfs_size, st.nfs_ino);
}

/* nfs_open by path in this context, read, close. */
static void open_read_close(struct nfs_context *nfs, const char *probe, const char *path)
{
	struct nfsfh *fh = NULL;

	if (nfs_open(nfs, path, O_RDONLY, &fh) != 0) {
		printf("%s: error %s\n", probe, nfs_get_error(nfs));
		return;
	}
	read_fh(nfs, probe, fh);
	nfs_close(nfs, fh);
}

int main(int argc, char **argv)
{
	struct nfs_context *nfs;
	struct nfs_url *url;
	struct nfsfh *file = NULL;
	struct reply dir;
	char err[300], line[64], *file_path, *dir_full;
	int phase;

	if (argc != 4) {
		fprintf(stderr, "usage: %s nfs://HOST/EXPORT?version=4&nfsport=PORT FILE DIR\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	nfs = nfs_init_context();
	if (nfs == NULL) {
		fprintf(stderr, "nfs_init_context failed\n");
		return 2;
	}
	url = nfs_parse_url_dir(nfs, argv[1]);
	if (url == NULL) {
		fprintf(stderr, "bad URL %s: %s\n", argv[1], nfs_get_error(nfs));
		return 2;
	}
	if (nfs_mount(nfs, url->server, url->path) != 0) {
		fprintf(stderr, "mount %s: %s\n", argv[1], nfs_get_error(nfs));
		return 2;
	}
	/* nfs_open takes a path below the mounted export; the raw LOOKUP walk starts at the
	 * server's pseudo root, so it names the export too. */
	if (asprintf(&file_path, "/%s", argv[2]) < 0 ||
	    asprintf(&dir_full, "%s/%s", url->path, argv[3]) < 0)
		return 2;

	if (nfs_open(nfs, file_path, O_RDONLY, &file) != 0) {
		fprintf(stderr, "open %s: %s\n", file_path, nfs_get_error(nfs));
		return 2;
	}
	memset(&dir, 0, sizeof(dir));
	if (lookup_fh(nfs, dir_full, &dir) != 0) {
		reply_error(&dir, err, sizeof(err));
		fprintf(stderr, "lookup %s: %s\n", dir_full, err);
		return 2;
	}

	for (phase = 0; phase < 2; phase++) {
		const char *p = phase == 0 ? "before" : "after";
		char probe[64];

		snprintf(probe, sizeof(probe), "%s file-handle read", p);
		read_fh(nfs, probe, file);
		snprintf(probe, sizeof(probe), "%s file-handle getattr", p);
		fstat_fh(nfs, probe, file);
		snprintf(probe, sizeof(probe), "%s dir-handle readdir", p);
		readdir_fh(nfs, probe, dir.fh, dir.fh_len);
		snprintf(probe, sizeof(probe), "%s path open+read", p);
		open_read_close(nfs, probe, file_path);
		{
			struct reply r;

			memset(&r, 0, sizeof(r));
			snprintf(probe, sizeof(probe), "%s path lookup+readdir", p);
			if (lookup_fh(nfs, dir_full, &r) != 0) {
				reply_error(&r, err, sizeof(err));
				printf("%s: error %s\n", probe, err);
			} else {
				readdir_fh(nfs, probe, r.fh, r.fh_len);
			}
		}
		if (phase == 0) {
			printf("ready\n");
			if (fgets(line, sizeof(line), stdin) == NULL) {
				fprintf(stderr, "stdin closed before the restart was done\n");
				return 2;
			}
		}
	}
	/* No close or umount: their outcome after a restart is not what is being probed, and the
	 * server forgets this client when its lease runs out. */
	printf("done\n");
	free(file_path);
	free(dir_full);
	nfs_destroy_url(url);
	return 0;
}
