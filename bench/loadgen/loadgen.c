/*
 * loadgen: an open-loop HTTP/1.1 load generator (and a saturation mode), one thread, epoll.
 *
 * Open loop (--rate R): request k is *scheduled* at start + k/R, whatever happened before it.
 * It goes out on an idle keep-alive connection; when none is idle it waits in a backlog, and its
 * latency is still measured from its scheduled time, so a stalled server shows up as latency
 * instead of silently lowering the offered rate (no coordinated omission, as in wrk2).
 * Saturation (--rate 0): every connection sends its next request as soon as the previous answer
 * arrived; latency is measured from the actual send, throughput is what the server sustains.
 *
 * One request in flight per connection (no pipelining: browsers do not pipeline either).
 * Responses are parsed just enough to find message boundaries (Content-Length, chunked, 204/304,
 * Connection: close) and to count status codes. Latencies go into a log-bucketed histogram
 * (HdrHistogram layout, relative error < 0.1 %). Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ULL
#define RBUF_BYTES 65536
#define MAX_HEADERS 64
#define MAX_BODIES 100000
#define TICK_NS (10 * 1000000ULL) /* housekeeping: timeouts, reconnects */
#define TIMER_TAG ((uint64_t)-1)

/* ---------------------------------------------------------------- histogram */

/* Values (ns) below 2*SUB are exact; above, each power of two is split into SUB buckets. */
#define SUB_BITS 10
#define SUB (1ULL << SUB_BITS)
#define MAX_VALUE ((1ULL << 41) - 1) /* ~36 min in ns */
#define NBUCKETS ((41 - SUB_BITS) * SUB + SUB)

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t total;
    uint64_t max;
    long double sum;
} hist_t;

static unsigned hist_index(uint64_t v) {
    if (v > MAX_VALUE) v = MAX_VALUE;
    if (v < 2 * SUB) return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    return (unsigned)(shift * SUB + (v >> shift));
}

/* Highest value that maps to bucket i (what HdrHistogram reports for a percentile). */
static uint64_t hist_upper(unsigned i) {
    if (i < 2 * SUB) return i;
    unsigned shift = (unsigned)(i / SUB) - 1;
    uint64_t mant = i - (uint64_t)shift * SUB;
    return ((mant + 1) << shift) - 1;
}

static void hist_add(hist_t *h, uint64_t v) {
    h->counts[hist_index(v)]++;
    h->total++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

static uint64_t hist_pct(const hist_t *h, double pct) {
    if (h->total == 0) return 0;
    uint64_t want = (uint64_t)ceil(pct / 100.0 * (double)h->total);
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t up = hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *host;
    int port;
    const char *method;
    const char *path;
    const char *headers[MAX_HEADERS];
    int nheaders;
    const char *body;
    const char *body_file;   /* whole file is one body */
    const char *bodies_file; /* one body per line, used round-robin */
    const char *raw_file;    /* complete request bytes, sent as they are */
    int connections;
    double rate; /* req/s over all connections; 0 = saturation */
    double duration_s;
    double warmup_s;
    double drain_s;
    double timeout_s;
    const char *label;
} opts_t;

static void usage(FILE *out) {
    fprintf(out,
        "usage: loadgen --port N [options]\n"
        "  --host H            server address (default 127.0.0.1)\n"
        "  --port N            server port (required)\n"
        "  --method M          default GET, or POST when a body is given\n"
        "  --path P            request target (default /)\n"
        "  -H, --header 'K: V' extra header (repeatable); Host and Content-Length are added\n"
        "  --body S            request body\n"
        "  --body-file F       request body read from a file\n"
        "  --bodies-file F     one body per line, sent round-robin (e.g. distinct event ids)\n"
        "  --raw-file F        complete raw request bytes (overrides method/path/headers/body)\n"
        "  -c, --connections N keep-alive connections (default 64)\n"
        "  -R, --rate R        open loop: scheduled requests per second; 0 = saturation (default 0)\n"
        "  -d, --duration S    measured seconds (default 10)\n"
        "  -w, --warmup S      seconds before measuring, same load (default 2)\n"
        "  --drain S           open loop: wait this long for late answers (default 5)\n"
        "  --timeout S         a request unanswered this long is an error (default 10)\n"
        "  --label S           copied into the JSON output\n");
}

/* ---------------------------------------------------------------- connections */

enum { C_DEAD, C_CONNECTING, C_IDLE, C_BUSY };
enum { P_HEAD, P_BODY_CL, P_CHUNK_SIZE, P_CHUNK_DATA, P_TRAILER, P_UNTIL_CLOSE };

typedef struct conn {
    int fd;
    int state;
    int idx;
    /* the request in flight */
    uint64_t start_ns; /* latency origin: scheduled time (open loop) or send time */
    uint64_t sent_ns;
    int measured;
    const char *wbuf;
    size_t wlen, woff;
    int want_out;
    /* response parsing */
    char rbuf[RBUF_BYTES];
    size_t rlen;
    size_t scanned;
    int pstate;
    uint64_t remaining;
    int status;
    int close_after;
    uint64_t retry_at_ns;
    struct conn *next_idle;
} conn_t;

typedef struct {
    uint64_t connect, reset, timeout, parse, closed_in_flight;
} errors_t;

static struct {
    opts_t o;
    int epfd, tfd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    conn_t *conns;
    conn_t *idle;
    int nidle;
    char **reqs;
    size_t *reqlens;
    size_t nreqs, next_req;
    int head_method; /* answers to HEAD carry no body whatever their headers say */
    /* schedule */
    uint64_t t0, warm_end, end, hard_end;
    uint64_t interval_ns_num; /* unused when rate == 0 */
    uint64_t total_k, next_k;
    uint64_t armed_at;
    /* results */
    hist_t lat, lag;
    uint64_t sent, sent_measured, completed_measured, completed_in_window;
    uint64_t non_2xx, unfinished, max_backlog;
    uint64_t status[600], status_all[600]; /* measured answers; every answer incl. warm-up */
    uint64_t status_other, status_all_other;
    errors_t err;
} G;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t sched_ns(uint64_t k) {
    return G.t0 + (uint64_t)((long double)k * NS_PER_S / G.o.rate);
}

/* The first request index scheduled at or after t (binary search over [lo, hi)). */
static uint64_t first_k_at(uint64_t t, uint64_t lo, uint64_t hi) {
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (sched_ns(mid) < t) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void idle_push(conn_t *c) {
    c->state = C_IDLE;
    c->next_idle = G.idle;
    G.idle = c;
    G.nidle++;
}

static conn_t *idle_pop(void) {
    conn_t *c = G.idle;
    if (c) {
        G.idle = c->next_idle;
        G.nidle--;
    }
    return c;
}

/* Rare (an idle keep-alive connection closed by the server): a linear scan is fine. */
static void idle_remove(conn_t *c) {
    for (conn_t **p = &G.idle; *p; p = &(*p)->next_idle) {
        if (*p == c) {
            *p = c->next_idle;
            G.nidle--;
            return;
        }
    }
}

static void ep_set(conn_t *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(G.epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->want_out = want_out;
}

static void conn_open(conn_t *c) {
    int fd = socket(G.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->rlen = c->scanned = 0;
    c->pstate = P_HEAD;
    c->close_after = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) == 0) {
        if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
        c->want_out = 1;
        ep_set(c, 0);
        idle_push(c);
        return;
    }
    if (errno != EINPROGRESS) {
        G.err.connect++;
        close(fd);
        c->fd = -1;
        c->state = C_DEAD;
        c->retry_at_ns = now_ns() + 100 * 1000000ULL;
        return;
    }
    if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    c->want_out = 1;
    c->state = C_CONNECTING;
}

/* Drop the connection; a request in flight is lost (counted by the caller). Reconnect later. */
static void conn_close(conn_t *c, uint64_t retry_delay_ns) {
    if (c->state == C_IDLE) idle_remove(c);
    if (c->fd >= 0) {
        epoll_ctl(G.epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_DEAD;
    c->retry_at_ns = now_ns() + retry_delay_ns;
}

static void conn_fail(conn_t *c, uint64_t *counter) {
    if (c->state == C_BUSY) (*counter)++;
    else if (c->state == C_CONNECTING) G.err.connect++;
    conn_close(c, c->state == C_CONNECTING ? 100 * 1000000ULL : 0);
}

static void conn_flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) ep_set(c, 1);
            return;
        }
        conn_fail(c, &G.err.reset);
        return;
    }
    if (c->want_out) ep_set(c, 0);
}

static void send_on(conn_t *c, uint64_t origin_ns, int measured, uint64_t now) {
    size_t r = G.next_req++ % G.nreqs;
    c->wbuf = G.reqs[r];
    c->wlen = G.reqlens[r];
    c->woff = 0;
    c->start_ns = origin_ns;
    c->sent_ns = now;
    c->measured = measured;
    c->state = C_BUSY;
    c->pstate = P_HEAD;
    c->status = 0;
    c->close_after = 0;
    G.sent++;
    if (measured) {
        G.sent_measured++;
        if (G.o.rate > 0) hist_add(&G.lag, now > origin_ns ? now - origin_ns : 0);
    }
    conn_flush(c);
}

/* Open loop: hand every due request to an idle connection (oldest first). */
static void dispatch_due(uint64_t now) {
    while (G.next_k < G.total_k && G.idle) {
        uint64_t s = sched_ns(G.next_k);
        if (s > now) break;
        conn_t *c = idle_pop();
        if (!c) break;
        send_on(c, s, s >= G.warm_end, now);
        G.next_k++;
    }
    if (G.next_k < G.total_k) {
        /* due but unsent: the client-side queue a real population of visitors would form */
        uint64_t due = first_k_at(now + 1, G.next_k, G.total_k) - G.next_k;
        if (due > G.max_backlog) G.max_backlog = due;
    }
}

static void saturate_one(conn_t *c, uint64_t now) {
    if (now < G.end) send_on(c, now, now >= G.warm_end, now);
    else idle_push(c);
}

static void response_done(conn_t *c, uint64_t now) {
    int st = c->status;
    int known = st >= 100 && st < 600;
    if (known) G.status_all[st]++; else G.status_all_other++;
    if (now >= G.warm_end && now < G.end) G.completed_in_window++;
    if (c->measured && (G.o.rate > 0 || now <= G.end)) {
        G.completed_measured++;
        hist_add(&G.lat, now - c->start_ns);
        if (known) G.status[st]++; else G.status_other++;
        if (st < 200 || st > 299) G.non_2xx++;
    }
    c->rlen = c->scanned = 0; /* one request in flight: nothing may follow the answer */
    c->pstate = P_HEAD;
    if (c->close_after) {
        conn_close(c, 0);
        return;
    }
    if (G.o.rate > 0) {
        idle_push(c);
        dispatch_due(now);
    } else {
        saturate_one(c, now);
    }
}

static int header_is(const char *line, size_t len, const char *name, const char **value) {
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return 0;
    const char *v = line + n + 1;
    while (v < line + len && (*v == ' ' || *v == '\t')) v++;
    *value = v;
    return 1;
}

/* Parse the status line and headers in rbuf[0..end); returns 0 or -1 on a malformed head. */
static int parse_head(conn_t *c, size_t end) {
    char *p = c->rbuf, *lim = c->rbuf + end;
    if (end < 12 || strncmp(p, "HTTP/1.", 7) != 0) return -1;
    if (!isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) ||
        !isdigit((unsigned char)p[11]))
        return -1;
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    int http10 = p[7] == '0';
    int has_cl = 0, chunked = 0, conn_close = http10, conn_keep = 0;
    uint64_t cl = 0;
    char *line = memchr(p, '\n', (size_t)(lim - p));
    if (!line) return -1;
    line++;
    while (line < lim) {
        char *eol = memchr(line, '\n', (size_t)(lim - line));
        if (!eol) break;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r') len--;
        if (len == 0) break;
        const char *v;
        if (header_is(line, len, "content-length", &v)) {
            char *e;
            cl = strtoull(v, &e, 10);
            has_cl = 1;
        } else if (header_is(line, len, "transfer-encoding", &v)) {
            if (memmem(v, (size_t)(line + len - v), "chunked", 7)) chunked = 1;
        } else if (header_is(line, len, "connection", &v)) {
            size_t vl = (size_t)(line + len - v);
            if (vl >= 5 && strncasecmp(v, "close", 5) == 0) conn_close = 1;
            if (vl >= 10 && strncasecmp(v, "keep-alive", 10) == 0) conn_keep = 1;
        }
        line = eol + 1;
    }
    c->close_after = conn_close && !(http10 && conn_keep);
    if (c->status < 200 || c->status == 204 || c->status == 304 || G.head_method) {
        c->remaining = 0;
        c->pstate = P_BODY_CL;
    } else if (chunked) {
        c->pstate = P_CHUNK_SIZE;
    } else if (has_cl) {
        c->remaining = cl;
        c->pstate = P_BODY_CL;
    } else {
        c->pstate = P_UNTIL_CLOSE;
        c->close_after = 1;
    }
    return 0;
}

static void consume(conn_t *c, size_t n) {
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
    c->scanned = 0;
}

/* Advance the parser over rbuf; completes the response when its last byte is in. */
static void parse(conn_t *c, uint64_t now) {
    for (;;) {
        switch (c->pstate) {
        case P_HEAD: {
            size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
            char *e = memmem(c->rbuf + from, c->rlen - from, "\r\n\r\n", 4);
            if (!e) {
                c->scanned = c->rlen;
                if (c->rlen == RBUF_BYTES) goto bad;
                return;
            }
            size_t head = (size_t)(e - c->rbuf) + 4;
            if (parse_head(c, head) < 0) goto bad;
            consume(c, head);
            if (c->status >= 100 && c->status < 200) { /* interim answer: the real one follows */
                c->pstate = P_HEAD;
                continue;
            }
            break;
        }
        case P_BODY_CL: {
            uint64_t take = c->rlen < c->remaining ? c->rlen : c->remaining;
            consume(c, (size_t)take);
            c->remaining -= take;
            if (c->remaining) return;
            if (c->rlen) goto bad; /* bytes nobody asked for */
            response_done(c, now);
            return;
        }
        case P_CHUNK_SIZE: {
            char *e = memmem(c->rbuf, c->rlen, "\r\n", 2);
            if (!e) {
                if (c->rlen == RBUF_BYTES) goto bad;
                return;
            }
            char *end;
            uint64_t size = strtoull(c->rbuf, &end, 16);
            if (end == c->rbuf) goto bad;
            consume(c, (size_t)(e - c->rbuf) + 2);
            if (size == 0) {
                c->pstate = P_TRAILER;
            } else {
                c->remaining = size + 2; /* data + CRLF */
                c->pstate = P_CHUNK_DATA;
            }
            break;
        }
        case P_CHUNK_DATA: {
            uint64_t take = c->rlen < c->remaining ? c->rlen : c->remaining;
            consume(c, (size_t)take);
            c->remaining -= take;
            if (c->remaining) return;
            c->pstate = P_CHUNK_SIZE;
            break;
        }
        case P_TRAILER: {
            char *e = memmem(c->rbuf, c->rlen, "\r\n", 2);
            if (!e) return;
            size_t len = (size_t)(e - c->rbuf);
            consume(c, len + 2);
            if (len == 0) {
                if (c->rlen) goto bad;
                response_done(c, now);
                return;
            }
            break;
        }
        case P_UNTIL_CLOSE:
            c->rlen = 0;
            return;
        }
    }
bad:
    conn_fail(c, &G.err.parse);
}

static void on_readable(conn_t *c, uint64_t now) {
    for (;;) {
        ssize_t n = read(c->fd, c->rbuf + c->rlen, RBUF_BYTES - c->rlen);
        if (n > 0) {
            if (c->state != C_BUSY) { /* unsolicited bytes */
                conn_fail(c, &G.err.parse);
                return;
            }
            c->rlen += (size_t)n;
            parse(c, now);
            if (c->state != C_BUSY || c->rlen == 0) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n == 0 && c->state == C_BUSY && c->pstate == P_UNTIL_CLOSE) {
            c->close_after = 1;
            response_done(c, now);
            return;
        }
        if (c->state == C_BUSY) conn_fail(c, n == 0 ? &G.err.closed_in_flight : &G.err.reset);
        else conn_close(c, 0); /* idle keep-alive connection closed by the server */
        return;
    }
}

static void on_event(conn_t *c, uint32_t ev, uint64_t now) {
    if (c->state == C_DEAD) return; /* closed earlier in this batch of events */
    if (c->state == C_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            conn_fail(c, &G.err.connect);
            return;
        }
        if (ev & EPOLLOUT) {
            int soerr = 0;
            socklen_t l = sizeof soerr;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
            if (soerr) {
                conn_fail(c, &G.err.connect);
                return;
            }
            ep_set(c, 0);
            if (G.o.rate > 0) {
                idle_push(c);
                dispatch_due(now);
            } else {
                saturate_one(c, now);
            }
        }
        return;
    }
    if (ev & EPOLLIN) on_readable(c, now);
    else if (ev & (EPOLLERR | EPOLLHUP)) {
        if (c->state == C_BUSY) conn_fail(c, &G.err.reset);
        else if (c->state != C_DEAD) conn_close(c, 0);
        return;
    }
    if (c->state == C_BUSY && (ev & EPOLLOUT)) conn_flush(c);
}

static void housekeeping(uint64_t now) {
    uint64_t tmo = (uint64_t)(G.o.timeout_s * NS_PER_S);
    for (int i = 0; i < G.o.connections; i++) {
        conn_t *c = &G.conns[i];
        if (c->state == C_BUSY && now - c->sent_ns > tmo) {
            conn_fail(c, &G.err.timeout);
        } else if (c->state == C_DEAD && now >= c->retry_at_ns && now < G.end) {
            conn_open(c);
            if (c->state == C_IDLE && G.o.rate == 0) {
                idle_remove(c);
                saturate_one(c, now);
            }
        }
    }
}

/* Wait for events until `wake` (ns, CLOCK_MONOTONIC). epoll_pwait2 takes a ns timeout in one
 * system call; kernels before 5.11 lack it, then a timerfd armed at `wake` does the job. */
static int have_pwait2 = 1;

static void arm_timer(uint64_t at);

static int wait_events(struct epoll_event *evs, int max, uint64_t wake) {
    if (have_pwait2) {
        uint64_t now = now_ns();
        uint64_t d = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(d / NS_PER_S), .tv_nsec = (long)(d % NS_PER_S)};
        int n = epoll_pwait2(G.epfd, evs, max, &ts, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        have_pwait2 = 0;
    }
    arm_timer(wake);
    return epoll_wait(G.epfd, evs, max, 1000);
}

static void arm_timer(uint64_t at) {
    if (at == G.armed_at) return;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at / NS_PER_S);
    its.it_value.tv_nsec = (long)(at % NS_PER_S);
    if (timerfd_settime(G.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
    G.armed_at = at;
}

/* ---------------------------------------------------------------- requests */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0; /* cap > n always holds here */
    *len = n;
    return buf;
}

static void add_request(const char *body, size_t blen) {
    const opts_t *o = &G.o;
    const char *method = o->method ? o->method : (body ? "POST" : "GET");
    G.head_method = strcmp(method, "HEAD") == 0;
    size_t cap = 1024 + blen + strlen(o->path) + strlen(o->host);
    for (int i = 0; i < o->nheaders; i++) cap += strlen(o->headers[i]) + 2;
    char *r = malloc(cap);
    int n = snprintf(r, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", method, o->path, o->host, o->port);
    for (int i = 0; i < o->nheaders; i++) n += snprintf(r + n, cap - (size_t)n, "%s\r\n", o->headers[i]);
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        n += snprintf(r + n, cap - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(r + n, cap - (size_t)n, "\r\n");
    if (blen) memcpy(r + n, body, blen);
    G.reqs = realloc(G.reqs, (G.nreqs + 1) * sizeof *G.reqs);
    G.reqlens = realloc(G.reqlens, (G.nreqs + 1) * sizeof *G.reqlens);
    G.reqs[G.nreqs] = r;
    G.reqlens[G.nreqs] = (size_t)n + blen;
    G.nreqs++;
}

static void build_requests(void) {
    const opts_t *o = &G.o;
    size_t len;
    if (o->raw_file) {
        char *raw = read_file(o->raw_file, &len);
        G.reqs = malloc(sizeof *G.reqs);
        G.reqlens = malloc(sizeof *G.reqlens);
        G.reqs[0] = raw;
        G.reqlens[0] = len;
        G.head_method = len >= 5 && strncmp(raw, "HEAD ", 5) == 0;
        G.nreqs = 1;
    } else if (o->bodies_file) {
        char *all = read_file(o->bodies_file, &len);
        char *line = all, *end = all + len;
        while (line < end && G.nreqs < MAX_BODIES) {
            char *nl = memchr(line, '\n', (size_t)(end - line));
            size_t l = nl ? (size_t)(nl - line) : (size_t)(end - line);
            if (l && line[l - 1] == '\r') l--;
            if (l) add_request(line, l);
            line = nl ? nl + 1 : end;
        }
        if (!G.nreqs) {
            fprintf(stderr, "loadgen: %s holds no body\n", o->bodies_file);
            exit(2);
        }
    } else if (o->body_file) {
        char *b = read_file(o->body_file, &len);
        add_request(b, len);
    } else {
        add_request(o->body, o->body ? strlen(o->body) : 0);
    }
}

/* ---------------------------------------------------------------- output */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void print_hist(const char *name, const hist_t *h) {
    printf("  \"%s\": {\"count\": %llu, \"mean\": %.4f, \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, "
           "\"p99_9\": %.4f, \"max\": %.4f}",
           name, (unsigned long long)h->total, h->total ? (double)(h->sum / h->total) / 1e6 : 0.0,
           ms(hist_pct(h, 50)), ms(hist_pct(h, 90)), ms(hist_pct(h, 99)), ms(hist_pct(h, 99.9)),
           ms(h->max));
}

static void print_status(const char *name, const uint64_t *counts, uint64_t other) {
    printf("  \"%s\": {", name);
    int first = 1;
    for (int s = 0; s < 600; s++) {
        if (!counts[s]) continue;
        printf("%s\"%d\": %llu", first ? "" : ", ", s, (unsigned long long)counts[s]);
        first = 0;
    }
    if (other) printf("%s\"other\": %llu", first ? "" : ", ", (unsigned long long)other);
    printf("},\n");
}

static void print_json(uint64_t finished_ns) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    double wall = (double)(finished_ns - G.t0) / 1e9;
    const opts_t *o = &G.o;
    printf("{\n");
    if (o->label) printf("  \"label\": \"%s\",\n", o->label);
    printf("  \"mode\": \"%s\",\n", o->rate > 0 ? "open-loop" : "saturation");
    printf("  \"target_rps\": %.1f,\n", o->rate);
    printf("  \"connections\": %d,\n", o->connections);
    printf("  \"duration_s\": %.3f,\n  \"warmup_s\": %.3f,\n", o->duration_s, o->warmup_s);
    printf("  \"distinct_requests\": %zu,\n", G.nreqs);
    if (o->rate > 0)
        printf("  \"scheduled\": %llu,\n",
               (unsigned long long)(G.total_k - first_k_at(G.warm_end, 0, G.total_k)));
    printf("  \"sent\": %llu,\n", (unsigned long long)G.sent_measured);
    printf("  \"completed\": %llu,\n", (unsigned long long)G.completed_measured);
    printf("  \"unfinished\": %llu,\n", (unsigned long long)G.unfinished);
    printf("  \"achieved_rps\": %.1f,\n", (double)G.completed_in_window / o->duration_s);
    printf("  \"non_2xx\": %llu,\n", (unsigned long long)G.non_2xx);
    printf("  \"errors\": {\"total\": %llu, \"connect\": %llu, \"reset\": %llu, \"timeout\": %llu, "
           "\"parse\": %llu, \"closed_in_flight\": %llu},\n",
           (unsigned long long)(G.err.connect + G.err.reset + G.err.timeout + G.err.parse +
                                G.err.closed_in_flight),
           (unsigned long long)G.err.connect, (unsigned long long)G.err.reset,
           (unsigned long long)G.err.timeout, (unsigned long long)G.err.parse,
           (unsigned long long)G.err.closed_in_flight);
    print_status("status", G.status, G.status_other);
    print_status("answered_all", G.status_all, G.status_all_other);
    print_hist("latency_ms", &G.lat);
    printf(",\n");
    if (o->rate > 0) {
        print_hist("send_lag_ms", &G.lag);
        printf(",\n  \"max_backlog\": %llu,\n", (unsigned long long)G.max_backlog);
    }
    printf("  \"client_cpu_s\": %.3f,\n  \"client_cpu_util\": %.3f,\n  \"wall_s\": %.3f\n}\n", cpu,
           wall > 0 ? cpu / wall : 0.0, wall);
}

/* ---------------------------------------------------------------- main */

static void parse_opts(int argc, char **argv) {
    opts_t *o = &G.o;
    *o = (opts_t){.host = "127.0.0.1", .path = "/", .connections = 64, .duration_s = 10,
                  .warmup_s = 2, .drain_s = 5, .timeout_s = 10};
    static const struct option longs[] = {
        {"host", 1, 0, 'h'},        {"port", 1, 0, 'p'},         {"method", 1, 0, 'm'},
        {"path", 1, 0, 'P'},        {"header", 1, 0, 'H'},       {"body", 1, 0, 'b'},
        {"body-file", 1, 0, 'B'},   {"bodies-file", 1, 0, 'L'},  {"raw-file", 1, 0, 'r'},
        {"connections", 1, 0, 'c'}, {"rate", 1, 0, 'R'},         {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'},      {"drain", 1, 0, 'D'},        {"timeout", 1, 0, 't'},
        {"label", 1, 0, 'l'},       {"help", 0, 0, '?'},         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "H:c:R:d:w:", longs, NULL)) != -1) {
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'm': o->method = optarg; break;
        case 'P': o->path = optarg; break;
        case 'H':
            if (o->nheaders == MAX_HEADERS) { fprintf(stderr, "loadgen: too many headers\n"); exit(2); }
            o->headers[o->nheaders++] = optarg;
            break;
        case 'b': o->body = optarg; break;
        case 'B': o->body_file = optarg; break;
        case 'L': o->bodies_file = optarg; break;
        case 'r': o->raw_file = optarg; break;
        case 'c': o->connections = atoi(optarg); break;
        case 'R': o->rate = atof(optarg); break;
        case 'd': o->duration_s = atof(optarg); break;
        case 'w': o->warmup_s = atof(optarg); break;
        case 'D': o->drain_s = atof(optarg); break;
        case 't': o->timeout_s = atof(optarg); break;
        case 'l': o->label = optarg; break;
        default: usage(ch == '?' ? stdout : stderr); exit(ch == '?' ? 0 : 2);
        }
    }
    if (o->port <= 0 || o->port > 65535 || o->connections < 1 || o->connections > 100000 ||
        o->rate < 0 || o->duration_s <= 0 || o->warmup_s < 0 || o->timeout_s <= 0 ||
        o->duration_s + o->warmup_s > 3600 || o->drain_s < 0 || o->drain_s > 600) {
        usage(stderr);
        exit(2);
    }
}

int main(int argc, char **argv) {
    parse_opts(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake at the scheduled ns, not 50 us later */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)G.o.connections + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", G.o.port);
    if (getaddrinfo(G.o.host, port, &hints, &ai) != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", G.o.host);
        return 2;
    }
    memcpy(&G.addr, ai->ai_addr, ai->ai_addrlen);
    G.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    build_requests();

    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    G.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (G.epfd < 0 || G.tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, G.tfd, &tev) < 0) die("epoll_ctl timer");

    G.conns = calloc((size_t)G.o.connections, sizeof *G.conns);
    if (!G.conns) die("calloc");
    for (int i = 0; i < G.o.connections; i++) {
        G.conns[i].idx = i;
        G.conns[i].fd = -1;
        conn_open(&G.conns[i]);
    }
    /* Let the connections establish before the clock starts: connecting is not the workload. */
    {
        uint64_t until = now_ns() + 2 * NS_PER_S;
        struct epoll_event evs[256];
        while (now_ns() < until) {
            int pending = 0;
            for (int i = 0; i < G.o.connections; i++) pending += G.conns[i].state == C_CONNECTING;
            if (!pending) break;
            int n = epoll_wait(G.epfd, evs, 256, 10);
            for (int i = 0; i < n; i++) {
                if (evs[i].data.u64 == TIMER_TAG) continue;
                conn_t *c = evs[i].data.ptr;
                if (c->state != C_CONNECTING) continue;
                int soerr = 0;
                socklen_t l = sizeof soerr;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
                if (soerr || (evs[i].events & (EPOLLERR | EPOLLHUP))) conn_fail(c, &G.err.connect);
                else if (evs[i].events & EPOLLOUT) { ep_set(c, 0); idle_push(c); }
            }
        }
    }

    G.t0 = now_ns();
    G.warm_end = G.t0 + (uint64_t)(G.o.warmup_s * NS_PER_S);
    G.end = G.warm_end + (uint64_t)(G.o.duration_s * NS_PER_S);
    G.hard_end = G.end + (uint64_t)((G.o.rate > 0 ? G.o.drain_s : 0) * NS_PER_S);
    if (G.o.rate > 0) {
        G.total_k = (uint64_t)ceill((long double)(G.o.warmup_s + G.o.duration_s) * G.o.rate);
    } else {
        conn_t *c;
        while ((c = idle_pop())) saturate_one(c, G.t0);
    }

    struct epoll_event evs[1024];
    uint64_t next_tick = G.t0 + TICK_NS;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= next_tick) {
            housekeeping(now);
            next_tick = now + TICK_NS;
        }
        if (G.o.rate > 0) {
            dispatch_due(now);
            if (now >= G.hard_end) break;
            if (G.next_k >= G.total_k) {
                int busy = 0;
                for (int i = 0; i < G.o.connections && !busy; i++) busy = G.conns[i].state == C_BUSY;
                if (!busy) break;
            }
        } else if (now >= G.end) {
            break;
        }
        uint64_t wake = next_tick;
        if (G.o.rate > 0 && G.next_k < G.total_k && G.idle) {
            uint64_t s = sched_ns(G.next_k);
            if (s < wake) wake = s;
        }
        if (G.o.rate == 0 && G.end < wake) wake = G.end;
        int n = wait_events(evs, 1024, wake);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        now = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == TIMER_TAG) {
                uint64_t expirations;
                if (read(G.tfd, &expirations, sizeof expirations) < 0) { /* spurious */ }
                G.armed_at = 0;
                continue;
            }
            on_event(evs[i].data.ptr, evs[i].events, now);
        }
    }

    uint64_t fin = now_ns();
    if (G.o.rate > 0) {
        /* Whatever did not finish counts at the latency it has so far (a lower bound), so a
         * server that stops answering cannot look fast by dropping the slow tail. */
        for (int i = 0; i < G.o.connections; i++) {
            conn_t *c = &G.conns[i];
            if (c->state == C_BUSY && c->measured) {
                G.unfinished++;
                hist_add(&G.lat, fin - c->start_ns);
            }
        }
        for (uint64_t k = G.next_k; k < G.total_k; k++) {
            uint64_t s = sched_ns(k);
            if (s < G.warm_end) continue;
            G.unfinished++;
            hist_add(&G.lat, fin > s ? fin - s : 0);
        }
    }
    print_json(fin);
    return 0;
}
