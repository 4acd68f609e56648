// rtpload: paced RTP load through a relay, like the shared rtpblast.c (same input: "pa ra pb rb"
// lines; same output fields), but it never spins: between send ticks (random, 0.3-1.7 ms apart,
// 1 ms on average) it sleeps in epoll_pwait2 until a packet arrives or the next tick is due.
// The ticks are random so that the load never runs in step with the kernel's scheduler tick,
// which samples CPU time for /proc/stat and /proc/PID/stat: work done in step with it would be
// missed by the sampling (or always hit). A spinning load generator keeps
// a core 100 % busy whatever it does, which hides work done in its own context (a kernel fast
// path runs in the sender's softirq); with this one, the machine's busy time (/proc/stat) is the
// work of the load plus the relay, so the relay's share can be measured for any design.
//
// gcc -O2 -o rtpload benches/rtpload.c ; ./rtpload --pps 50 --seconds 10 < calls.txt
// --pt-a N / --pt-b N: the RTP payload type of what side a (pa) and side b (pb) send (default 0),
// for transcoding loads (a relay that re-encodes the payload makes the latency fields, read from
// the payload's first 8 bytes, meaningless; loss stays exact).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    struct sockaddr_in to;
    uint16_t seq;
    uint32_t ts, ssrc;
    uint8_t pt;
} leg_t;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int bind_udp(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("bind");
        exit(2);
    }
    return fd;
}

int main(int argc, char **argv) {
    double pps = 50, secs = 10;
    int pt_a = 0, pt_b = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--pps")) pps = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--pt-a")) pt_a = atoi(argv[i + 1]) & 0x7f;
        else if (!strcmp(argv[i], "--pt-b")) pt_b = atoi(argv[i + 1]) & 0x7f;
    }
    int cap = 1024, n = 0;
    leg_t *legs = malloc(sizeof(leg_t) * cap);
    int pa, ra, pb, rb;
    while (scanf("%d %d %d %d", &pa, &ra, &pb, &rb) == 4) {
        if (n + 2 > cap) {
            cap *= 2;
            legs = realloc(legs, sizeof(leg_t) * cap);
        }
        int p[2][2] = {{pa, ra}, {pb, rb}};
        for (int k = 0; k < 2; k++) {
            leg_t *l = &legs[n++];
            l->fd = bind_udp(p[k][0]);
            memset(&l->to, 0, sizeof l->to);
            l->to.sin_family = AF_INET;
            l->to.sin_port = htons(p[k][1]);
            inet_pton(AF_INET, "127.0.0.1", &l->to.sin_addr);
            l->seq = 0;
            l->ts = 0;
            l->ssrc = 0x20000 + n;
            l->pt = k == 0 ? pt_a : pt_b;
        }
    }
    if (!n) {
        fprintf(stderr, "no calls on stdin\n");
        return 2;
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, legs[i].fd, &e);
    }
    uint64_t total = (uint64_t)(pps * secs) * n, sent = 0, recvd = 0, bad = 0;
    uint32_t *lat = malloc(sizeof(uint32_t) * (total + 16));
    size_t nlat = 0;
    double interval = 1e9 / (pps * n);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    unsigned char pkt[172], buf[2048];
    memset(pkt, 0xd5, sizeof pkt);
    uint64_t t0 = now_ns(), drain_end = t0 + (uint64_t)(secs * 1e9) + 500000000ull;
    uint64_t next_tick = t0;
    struct epoll_event ev[256];
    int cur = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= drain_end) break;
        if (t >= next_tick) {
            while (sent < total && t0 + (uint64_t)(sent * interval) <= t) {
                leg_t *l = &legs[cur];
                cur = (cur + 1) % n;
                pkt[0] = 0x80;
                pkt[1] = l->pt;
                pkt[2] = l->seq >> 8;
                pkt[3] = l->seq;
                l->seq++;
                uint32_t ts = htonl(l->ts);
                l->ts += 160;
                memcpy(pkt + 4, &ts, 4);
                uint32_t ss = htonl(l->ssrc);
                memcpy(pkt + 8, &ss, 4);
                uint64_t now = now_ns();
                memcpy(pkt + 12, &now, 8);
                if (sendto(l->fd, pkt, sizeof pkt, 0, (struct sockaddr *)&l->to, sizeof l->to) < 0 &&
                    errno != EAGAIN) {
                    perror("sendto");
                    return 2;
                }
                sent++;
            }
            while (next_tick <= t) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                next_tick += 300000 + rng % 1400000;  // 0.3-1.7 ms
            }
        }
        uint64_t wait = next_tick > t ? next_tick - t : 0;
        struct timespec to = {.tv_sec = wait / 1000000000ull, .tv_nsec = wait % 1000000000ull};
        int k = epoll_pwait2(ep, ev, 256, &to, NULL);
        for (int i = 0; i < k; i++) {
            int fd = legs[ev[i].data.u32].fd;
            for (;;) {
                ssize_t r = recv(fd, buf, sizeof buf, 0);
                if (r < 0) break;
                if (r < 20 || (buf[0] & 0xc0) != 0x80) {
                    bad++;
                    continue;
                }
                uint64_t s;
                memcpy(&s, buf + 12, 8);
                recvd++;
                if (nlat < total + 16) lat[nlat++] = (now_ns() - s) / 1000;
            }
        }
    }
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    double el = (now_ns() - t0) / 1e9 - 0.5;
    printf("legs=%d pps_per_leg=%.0f seconds=%.1f sent=%llu received=%llu loss_pct=%.3f offered_pps=%.0f "
           "lat_us_p50=%u lat_us_p99=%u lat_us_max=%u nonrtp=%llu\n",
           n, pps, el, (unsigned long long)sent, (unsigned long long)recvd,
           sent ? 100.0 * (sent - recvd) / sent : 0, sent / el, nlat ? lat[nlat / 2] : 0,
           nlat ? lat[nlat * 99 / 100] : 0, nlat ? lat[nlat - 1] : 0, (unsigned long long)bad);
    return 0;
}
