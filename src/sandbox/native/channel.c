/* Frame writer and output archiver of the Airqube init channel (see channel.h). */
#define _GNU_SOURCE
#include "channel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int channel_fd = 1;

void aq_channel_init(int fd) { channel_fd = fd; }

static void write_all(const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(channel_fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(125); /* the host is gone: nothing left to tell it */
    }
    p += n;
    len -= (size_t)n;
  }
}

/* Writes header and payload with one writev where the channel takes it (one virtio buffer, not two). */
static void write_frame(const unsigned char *header, size_t hlen, const char *payload, size_t plen) {
  struct iovec iov[2] = {{(void *)header, hlen}, {(void *)payload, plen}};
  size_t total = hlen + plen;
  ssize_t n;
  do n = writev(channel_fd, iov, plen > 0 ? 2 : 1);
  while (n < 0 && errno == EINTR);
  if (n < 0) _exit(125); /* the host is gone: nothing left to tell it */
  if ((size_t)n == total) return;
  /* a short write: finish it piece by piece */
  if ((size_t)n < hlen) {
    write_all(header + n, hlen - (size_t)n);
    write_all(payload, plen);
  } else {
    write_all(payload + ((size_t)n - hlen), total - (size_t)n);
  }
}

void aq_frame(char type, const void *payload, size_t len) {
  const char *p = payload;
  do {
    size_t part = len > AQ_FRAME_MAX ? AQ_FRAME_MAX : len;
    unsigned char header[5] = {(unsigned char)type, (unsigned char)(part >> 24), (unsigned char)(part >> 16),
                               (unsigned char)(part >> 8), (unsigned char)part};
    write_frame(header, sizeof header, p, part);
    p += part;
    len -= part;
  } while (len > 0);
}

void aq_warn(const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  aq_frame('W', text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

void aq_exit_frame(int kind, int32_t code) {
  unsigned char p[5] = {(unsigned char)kind, (unsigned char)((uint32_t)code >> 24), (unsigned char)((uint32_t)code >> 16),
                        (unsigned char)((uint32_t)code >> 8), (unsigned char)code};
  aq_frame('X', p, sizeof p);
}

int aq_parse_limits(const char *text, struct aq_output_limits *limits) {
  unsigned long long v[3];
  const char *p = text;
  for (int k = 0; k < 3; k++) {
    char *end;
    errno = 0;
    if (*p < '0' || *p > '9') return -1;
    v[k] = strtoull(p, &end, 10);
    if (errno != 0 || v[k] == 0) return -1;
    if (k < 2 && *end != ':') return -1;
    if (k == 2 && *end != '\0') return -1;
    p = end + 1;
  }
  limits->max_files = v[0];
  limits->max_file_bytes = v[1];
  limits->max_total_bytes = v[2];
  return 0;
}

/* ---- archive writer: bytes are buffered into full 'T' frames ---- */

static unsigned char tar_buf[AQ_FRAME_MAX];
static size_t tar_len = 0;

static void tar_put(const void *data, size_t len) {
  const unsigned char *p = data;
  while (len > 0) {
    size_t room = sizeof tar_buf - tar_len;
    size_t part = len < room ? len : room;
    memcpy(tar_buf + tar_len, p, part);
    tar_len += part;
    p += part;
    len -= part;
    if (tar_len == sizeof tar_buf) {
      aq_frame('T', tar_buf, tar_len);
      tar_len = 0;
    }
  }
}

static void tar_flush(void) {
  if (tar_len > 0) aq_frame('T', tar_buf, tar_len);
  tar_len = 0;
}

static const unsigned char zeros[1024];

static void tar_pad(unsigned long long size) { tar_put(zeros, (size_t)((512 - (size % 512)) % 512)); }

static void octal(unsigned char *field, size_t width, unsigned long long value) {
  char text[32];
  snprintf(text, sizeof text, "%0*llo", (int)(width - 1), value);
  memcpy(field, text, width - 1);
  field[width - 1] = '\0';
}

/* Largest size the 11 octal digits of a ustar size field hold; above it the size goes into a pax record. */
#define USTAR_SIZE_MAX 077777777777ULL

static void ustar_block(unsigned char h[512], const char *name, size_t namelen, char type, unsigned long long size,
                        mode_t mode) {
  memset(h, 0, 512);
  memcpy(h, name, namelen < 100 ? namelen : 100);
  octal(h + 100, 8, mode & 0777);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, size > USTAR_SIZE_MAX ? 0 : size);
  octal(h + 136, 12, 0); /* mtime normalised to 0: the same outputs give the same archive */
  h[156] = (unsigned char)type;
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
}

static void ustar_checksum(unsigned char h[512]) {
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; i++) sum += h[i];
  char text[8];
  snprintf(text, sizeof text, "%06o", sum);
  memcpy(h + 148, text, 7);
  h[155] = ' ';
}

/* Appends one "LEN key=value\n" pax record, LEN counting the whole record. */
static size_t pax_record(char *out, size_t room, const char *key, const char *value) {
  size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
  size_t len = body + 1;
  for (;;) {
    char digits[24];
    size_t d = (size_t)snprintf(digits, sizeof digits, "%zu", len);
    if (d + body == len) break;
    len = d + body;
  }
  if (len > room) return 0;
  return (size_t)snprintf(out, room, "%zu %s=%s\n", len, key, value);
}

/*
 * Writes the header(s) of one entry. Names that fit ustar's 100-byte name (or its 155-byte prefix + 100-byte
 * name split at a '/') use plain ustar; longer names, and sizes beyond ustar's 8 GiB, get a pax extended header
 * first, so that no name is ever cut.
 */
static void tar_header(const char *name, char type, unsigned long long size, mode_t mode) {
  unsigned char h[512];
  size_t len = strlen(name);
  const char *cut = NULL;
  if (len > 100) {
    for (const char *s = name + 1; *s; s++)
      if (*s == '/' && (size_t)(s - name) <= 155 && strlen(s + 1) <= 100 && s[1] != '\0') {
        cut = s;
        break;
      }
  }
  if ((len > 100 && !cut) || size > USTAR_SIZE_MAX) {
    char records[AQ_MAX_PATH + 128];
    size_t used = 0;
    if (len > 100 && !cut) used += pax_record(records + used, sizeof records - used, "path", name);
    if (size > USTAR_SIZE_MAX) {
      char value[24];
      snprintf(value, sizeof value, "%llu", size);
      used += pax_record(records + used, sizeof records - used, "size", value);
    }
    ustar_block(h, "PaxHeader", 9, 'x', used, 0644);
    ustar_checksum(h);
    tar_put(h, 512);
    tar_put(records, used);
    tar_pad(used);
    ustar_block(h, name, len > 100 ? 100 : len, type, size, mode);
  } else if (cut) {
    ustar_block(h, cut + 1, strlen(cut + 1), type, size, mode);
    memcpy(h + 345, name, (size_t)(cut - name));
  } else {
    ustar_block(h, name, len, type, size, mode);
  }
  ustar_checksum(h);
  tar_put(h, 512);
}

/* ---- the walker: one pass to check, one to send ---- */

struct walk {
  const struct aq_output_limits *limits;
  int emit;                    /* 0: check only; 1: write the archive */
  unsigned long long files, dirs, total;
  int failure;                 /* AQ_OUT_* */
  char failed_path[AQ_MAX_PATH + 64];
};

static int fail(struct walk *w, int code, const char *path) {
  if (w->failure == AQ_OUT_OK) {
    w->failure = code;
    snprintf(w->failed_path, sizeof w->failed_path, "%s", path);
  }
  return -1;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of one directory (caller frees); NULL with *count = -1 on error. */
static char **list_dir(const char *path, struct walk *w, long *count) {
  DIR *dir = opendir(path);
  if (!dir && errno == EACCES) {
    /* the qube (same uid) took its own read permission away: give it back, never skip */
    struct stat st;
    if (lstat(path, &st) == 0 && chmod(path, (st.st_mode & 07777) | S_IRUSR | S_IXUSR) == 0) dir = opendir(path);
  }
  *count = -1;
  if (!dir) {
    fail(w, AQ_OUT_UNREADABLE, path);
    return NULL;
  }
  size_t cap = 64, n = 0;
  char **names = malloc(cap * sizeof *names);
  struct dirent *entry = NULL;
  while (names && (entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    if (n >= 2 * w->limits->max_files + 2) { /* more entries than files and directories together may have */
      fail(w, AQ_OUT_TOO_MANY_FILES, path);
      break;
    }
    if (n == cap) {
      cap *= 2;
      char **grown = realloc(names, cap * sizeof *names);
      if (!grown) break;
      names = grown;
    }
    names[n] = strdup(entry->d_name);
    if (!names[n]) break;
    n++;
  }
  closedir(dir);
  if (!names || w->failure != AQ_OUT_OK || (entry != NULL && w->failure == AQ_OUT_OK)) {
    if (w->failure == AQ_OUT_OK) fail(w, AQ_OUT_UNREADABLE, path); /* out of memory */
    for (size_t k = 0; names && k < n; k++) free(names[k]);
    free(names);
    return NULL;
  }
  qsort(names, n, sizeof *names, by_name);
  *count = (long)n;
  return names;
}

static int depth_of(const char *name) {
  int depth = 1;
  for (const char *s = name; *s; s++)
    if (*s == '/') depth++;
  return depth;
}

static int send_file(struct walk *w, const char *path, const char *name, const struct stat *st) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES && chmod(path, (st->st_mode & 07777) | S_IRUSR) == 0)
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fail(w, AQ_OUT_UNREADABLE, path);
  if (!w->emit) {
    close(fd);
    return 0;
  }
  unsigned long long size = (unsigned long long)st->st_size;
  tar_header(name, '0', size, st->st_mode);
  static unsigned char buf[AQ_FRAME_MAX];
  unsigned long long left = size;
  while (left > 0) {
    ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* cannot happen once every other process is gone; keep the archive well-formed anyway */
    tar_put(buf, (size_t)n);
    left -= (unsigned long long)n;
  }
  while (left > 0) {
    size_t part = left < sizeof zeros ? (size_t)left : sizeof zeros;
    tar_put(zeros, part);
    left -= part;
  }
  tar_pad(size);
  close(fd);
  return 0;
}

/*
 * True when the host's unpacker can keep `name` exactly as it is: valid UTF-8 (shortest forms, no surrogates)
 * without control characters or backslashes (src/sandbox/unpack.ts refuses those). Anything else is refused up
 * front by name, never renamed or dropped.
 */
static int name_is_portable(const char *name) {
  const unsigned char *s = (const unsigned char *)name;
  while (*s) {
    unsigned c = *s;
    if (c < 0x20 || c == 0x7f || c == '\\') return 0;
    if (c < 0x80) {
      s++;
      continue;
    }
    int more;
    unsigned min, cp;
    if ((c & 0xe0) == 0xc0) more = 1, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) more = 2, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) more = 3, min = 0x10000, cp = c & 0x07;
    else return 0;
    for (int k = 1; k <= more; k++) {
      if ((s[k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    s += more + 1;
  }
  return 1;
}

/* Visits `path` (absolute); `name` is its archive name (relative to /). */
static int visit(struct walk *w, const char *path, const char *name) {
  if (strlen(name) + 1 > AQ_MAX_PATH) return fail(w, AQ_OUT_PATH_TOO_LONG, path);
  if (!name_is_portable(name)) return fail(w, AQ_OUT_BAD_NAME, path);
  if (depth_of(name) > AQ_MAX_DEPTH) return fail(w, AQ_OUT_TOO_DEEP, path);
  struct stat st;
  if (lstat(path, &st) < 0) return fail(w, AQ_OUT_UNREADABLE, path);
  if (S_ISREG(st.st_mode)) {
    if (!w->emit) {
      unsigned long long size = (unsigned long long)st.st_size;
      if (++w->files > w->limits->max_files) return fail(w, AQ_OUT_TOO_MANY_FILES, path);
      if (size > w->limits->max_file_bytes) return fail(w, AQ_OUT_FILE_TOO_LARGE, path);
      w->total += size;
      if (w->total > w->limits->max_total_bytes) return fail(w, AQ_OUT_TOO_LARGE, path);
    }
    return send_file(w, path, name, &st);
  }
  if (!S_ISDIR(st.st_mode)) return fail(w, AQ_OUT_UNSUPPORTED_TYPE, path);
  if (!w->emit && ++w->dirs > w->limits->max_files) return fail(w, AQ_OUT_TOO_MANY_FILES, path);
  if (w->emit) {
    char dirname[AQ_MAX_PATH + 2];
    snprintf(dirname, sizeof dirname, "%s/", name);
    tar_header(dirname, '5', 0, st.st_mode);
  }
  long count;
  char **names = list_dir(path, w, &count);
  if (!names) return -1;
  int rc = 0;
  for (long k = 0; k < count && rc == 0; k++) {
    size_t need = strlen(path) + strlen(names[k]) + 2;
    if (need > AQ_MAX_PATH + 2) {
      char shown[AQ_MAX_PATH + 64];
      snprintf(shown, sizeof shown, "%s/%s", path, names[k]);
      rc = fail(w, AQ_OUT_PATH_TOO_LONG, shown);
      break;
    }
    char child[AQ_MAX_PATH + 2];
    size_t plen = strlen(path);
    memcpy(child, path, plen);
    child[plen] = '/';
    memcpy(child + plen + 1, names[k], strlen(names[k]) + 1);
    rc = visit(w, child, child + 1);
  }
  for (long k = 0; k < count; k++) free(names[k]);
  free(names);
  return rc;
}

static const char *failure_name(int code) {
  switch (code) {
    case AQ_OUT_TOO_MANY_FILES: return "too many output files";
    case AQ_OUT_FILE_TOO_LARGE: return "output file over the per-file cap";
    case AQ_OUT_TOO_LARGE: return "outputs over the total cap";
    case AQ_OUT_PATH_TOO_LONG: return "output path too long";
    case AQ_OUT_TOO_DEEP: return "output nested too deep";
    case AQ_OUT_UNREADABLE: return "output unreadable";
    case AQ_OUT_UNSUPPORTED_TYPE: return "output is not a regular file or directory";
    case AQ_OUT_BAD_NAME: return "output name the host cannot keep (control character, backslash or not UTF-8)";
    default: return "output failure";
  }
}

int aq_archive_outputs(char *const *paths, int count, const struct aq_output_limits *limits) {
  struct walk w = {.limits = limits, .emit = 0, .failure = AQ_OUT_OK};
  for (int pass = 0; pass < 2; pass++) {
    w.emit = pass;
    for (int i = 0; i < count && w.failure == AQ_OUT_OK; i++) {
      struct stat st;
      if (paths[i][0] != '/' || lstat(paths[i], &st) < 0) {
        if (pass == 0) aq_warn("declared output missing: %s", paths[i]);
        continue;
      }
      visit(&w, paths[i], paths[i] + 1);
    }
    if (w.failure != AQ_OUT_OK) {
      /* 'F': code + detail; nothing of the archive has been sent yet (the check pass sends nothing) */
      char payload[1 + sizeof w.failed_path + 64];
      payload[0] = (char)w.failure;
      int n = snprintf(payload + 1, sizeof payload - 1, "%s: %s", failure_name(w.failure), w.failed_path);
      size_t len = n < 0 ? 0 : (size_t)n < sizeof payload - 1 ? (size_t)n : sizeof payload - 2;
      aq_frame('F', payload, 1 + len);
      return w.failure;
    }
  }
  tar_put(zeros, sizeof zeros); /* two zero blocks end the archive */
  tar_flush();
  return AQ_OUT_OK;
}

void aq_kill_others(pid_t group) {
  /* kill(-1) from PID 1 reaches every process of its own PID namespace and nothing else. Run anywhere else
     (a test on the host, as root) it would reach every process of the machine: there, only the command's
     process group is killed. */
  if (getpid() == 1) kill(-1, SIGKILL);
  else if (group > 1) kill(-group, SIGKILL);
  struct timespec pause = {0, 10 * 1000 * 1000};
  for (int round = 0; round < 500; round++) { /* at most about 5 s; killed processes go quickly */
    pid_t pid = waitpid(-1, NULL, WNOHANG);
    if (pid < 0 && errno == ECHILD) return;
    if (pid > 0) continue;
    nanosleep(&pause, NULL);
  }
}
