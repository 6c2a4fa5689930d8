// h2_echo: a light gRPC unary echo backend on libnghttp2, for measuring how
// a proxy's calls/s scale with its worker processes (run.py's
// `unary-load-light`). Driven directly by h2load -c 10 -m 10 on the benchmark
// VM, the grpc++ echo_server costs 11 us of CPU per call and this one 2, so
// on a 2-core machine the load side leaves a proxy's second worker most of a
// core.
//
// What it answers, to any POST: HEADERS (:status 200, content-type
// application/grpc), the request body unchanged in one DATA frame, and
// trailers (grpc-status 0) once the request has ended. No gRPC parsing: a
// unary echo whose request is one message answers that message.
//
//     h2_echo PORT        (h2c prior knowledge on 127.0.0.1:PORT, one thread)

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY (1 << 20)

typedef struct {
  int fd;
  nghttp2_session *session;
  char *out;  // bytes nghttp2 produced that the socket has not taken yet
  size_t out_len, out_cap;
  int want_write;  // EPOLLOUT registered
} Conn;

typedef struct {
  char *body;
  size_t len, cap, sent;
} Call;

static int epfd;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void append_out(Conn *c, const uint8_t *data, size_t len) {
  if (c->out_len + len > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 65536;
    while (cap < c->out_len + len) cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out) die("realloc");
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
}

static void close_conn(Conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  nghttp2_session_del(c->session);
  free(c->out);
  free(c);
}

// Everything nghttp2 has to send goes out in one write per batch.
static int flush_conn(Conn *c) {
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->session, &data);
    if (n < 0) return -1;
    if (n == 0) break;
    append_out(c, data, (size_t)n);
  }
  size_t off = 0;
  while (off < c->out_len) {
    ssize_t w = write(c->fd, c->out + off, c->out_len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -1;
    }
    off += (size_t)w;
  }
  memmove(c->out, c->out + off, c->out_len - off);
  c->out_len -= off;
  int want = c->out_len > 0;
  if (want != c->want_write) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_write = want;
  }
  if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
      c->out_len == 0)
    return -1;
  return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user) {
  (void)s, (void)sid, (void)user;
  Call *call = src->ptr;
  size_t n = call->len - call->sent;
  if (n > len) n = len;
  memcpy(buf, call->body + call->sent, n);
  call->sent += n;
  if (call->sent == call->len) {
    static const nghttp2_nv trailers[] = {
        {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(s, sid, trailers, 1) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  (void)user;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Call *call = calloc(1, sizeof(Call));
  if (!call) return NGHTTP2_ERR_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, call);
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *user) {
  (void)flags, (void)user;
  Call *call = nghttp2_session_get_stream_user_data(s, sid);
  if (!call) return 0;
  if (call->len + len > MAX_BODY)
    return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_REFUSED_STREAM);
  if (call->len + len > call->cap) {
    size_t cap = call->cap ? call->cap * 2 : 256;
    while (cap < call->len + len) cap *= 2;
    call->body = realloc(call->body, cap);
    if (!call->body) return NGHTTP2_ERR_CALLBACK_FAILURE;
    call->cap = cap;
  }
  memcpy(call->body + call->len, data, len);
  call->len += len;
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  (void)user;
  if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) return 0;
  int32_t sid = frame->hd.stream_id;
  Call *call = nghttp2_session_get_stream_user_data(s, sid);
  if (!call) return 0;
  static const nghttp2_nv headers[] = {
      {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_data_provider body = {.source.ptr = call, .read_callback = read_body};
  if (nghttp2_submit_response(s, sid, headers, 2, &body) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *user) {
  (void)code, (void)user;
  Call *call = nghttp2_session_get_stream_user_data(s, sid);
  if (call) {
    free(call->body);
    free(call);
  }
  return 0;
}

static nghttp2_session_callbacks *callbacks;

static void accept_conns(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: all taken
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn *c = calloc(1, sizeof(Conn));
    if (!c) die("calloc");
    c->fd = fd;
    if (nghttp2_session_server_new(&c->session, callbacks, c) != 0) die("nghttp2 session");
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100000},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 8 << 20);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    if (flush_conn(c) != 0) close_conn(c);
  }
}

int main(int argc, char **argv) {
  int port = argc >= 2 ? atoi(argv[1]) : 0;
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: h2_echo PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
  if (listen(lfd, 1024) != 0) die("listen");
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  printf("h2_echo listening on 127.0.0.1:%d\n", port);
  fflush(stdout);

  static uint8_t buf[1 << 16];
  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epfd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      Conn *c = events[i].data.ptr;
      if (c == NULL) {
        accept_conns(lfd);
        continue;
      }
      int failed = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          ssize_t r = read(c->fd, buf, sizeof buf);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && errno == EAGAIN) break;
          if (r <= 0 || nghttp2_session_mem_recv(c->session, buf, (size_t)r) < 0) {
            failed = 1;
            break;
          }
          if ((size_t)r < sizeof buf) break;  // drained: no second read to find EAGAIN
        }
      }
      if (failed || flush_conn(c) != 0) close_conn(c);
    }
  }
}
