/* Frame writer and ustar writer of the Airqube init channel (see channel.h). */
#define _GNU_SOURCE
#include "channel.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

void aq_frame(char type, const void *payload, size_t len) {
  const char *p = payload;
  do {
    size_t part = len > AQ_FRAME_MAX ? AQ_FRAME_MAX : len;
    unsigned char header[5] = {(unsigned char)type, (unsigned char)(part >> 24), (unsigned char)(part >> 16),
                               (unsigned char)(part >> 8), (unsigned char)part};
    write_all(header, sizeof header);
    if (part > 0) write_all(p, part);
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

/* Archive bytes are buffered into full frames. */
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

static void octal(char *field, size_t width, unsigned long long value) {
  snprintf(field, width, "%0*llo", (int)(width - 1), value);
}

/* Writes one ustar header; returns 0, or -1 when the name does not fit (the entry is skipped). */
static int tar_header(const char *name, char type, unsigned long long size, mode_t mode, const char *link) {
  unsigned char h[512];
  memset(h, 0, sizeof h);
  size_t len = strlen(name);
  if (len <= 100) {
    memcpy(h, name, len);
  } else {
    /* split at a '/' so that prefix <= 155 and name <= 100 */
    const char *cut = NULL;
    for (const char *s = name; *s; s++)
      if (*s == '/' && (size_t)(s - name) <= 155 && strlen(s + 1) <= 100 && s != name) cut = s;
    if (!cut) return -1;
    memcpy(h + 345, name, (size_t)(cut - name));
    memcpy(h, cut + 1, strlen(cut + 1));
  }
  octal((char *)h + 100, 8, mode & 07777);
  octal((char *)h + 108, 8, 0);
  octal((char *)h + 116, 8, 0);
  octal((char *)h + 124, 12, size);
  octal((char *)h + 136, 12, 0); /* mtime normalised to 0 */
  h[156] = (unsigned char)type;
  if (link) strncpy((char *)h + 157, link, 100);
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof h; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  h[155] = ' ';
  tar_put(h, sizeof h);
  return 0;
}

static void tar_file(const char *path, const char *name, const struct stat *st) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    aq_warn("cannot read output %s: %s", path, strerror(errno));
    return;
  }
  unsigned long long size = (unsigned long long)st->st_size;
  if (tar_header(name, '0', size, st->st_mode, NULL) < 0) {
    aq_warn("output path too long, skipped: %s", path);
    close(fd);
    return;
  }
  static unsigned char buf[65536];
  unsigned long long left = size;
  while (left > 0) {
    ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* the file shrank: pad below */
    tar_put(buf, (size_t)n);
    left -= (unsigned long long)n;
  }
  memset(buf, 0, sizeof buf);
  while (left > 0) { /* keep the archive well-formed whatever the file did */
    size_t part = left < sizeof buf ? left : sizeof buf;
    tar_put(buf, part);
    left -= part;
  }
  size_t pad = (512 - (size % 512)) % 512;
  tar_put(buf, pad);
  close(fd);
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)ftw;
  const char *name = path[0] == '/' ? path + 1 : path; /* archive paths are relative to / */
  if (*name == '\0') return 0;
  if (flag == FTW_DNR || flag == FTW_NS) {
    aq_warn("cannot read output %s", path);
    return 0;
  }
  char dirname[4096];
  switch (st->st_mode & S_IFMT) {
    case S_IFREG:
      tar_file(path, name, st);
      break;
    case S_IFDIR:
      snprintf(dirname, sizeof dirname, "%s/", name);
      if (tar_header(dirname, '5', 0, st->st_mode, NULL) < 0) aq_warn("output path too long, skipped: %s", path);
      break;
    case S_IFLNK: {
      char target[101] = {0};
      ssize_t n = readlink(path, target, 100);
      if (n < 0) n = 0;
      target[n] = '\0';
      if (tar_header(name, '2', 0, st->st_mode, target) < 0) aq_warn("output path too long, skipped: %s", path);
      break;
    }
    case S_IFCHR: tar_header(name, '3', 0, st->st_mode, NULL); break;
    case S_IFBLK: tar_header(name, '4', 0, st->st_mode, NULL); break;
    case S_IFIFO: tar_header(name, '6', 0, st->st_mode, NULL); break;
    default: aq_warn("output of unknown type skipped: %s", path); break;
  }
  return 0;
}

void aq_archive_outputs(char *const *paths, int count) {
  for (int i = 0; i < count; i++) {
    struct stat st;
    if (lstat(paths[i], &st) < 0) {
      aq_warn("declared output missing: %s", paths[i]);
      continue;
    }
    if (nftw(paths[i], visit, 16, FTW_PHYS) < 0) aq_warn("cannot walk output %s: %s", paths[i], strerror(errno));
  }
  static const unsigned char zero[1024];
  tar_put(zero, sizeof zero);
  tar_flush();
}
