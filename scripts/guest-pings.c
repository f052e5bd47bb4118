/*
 * vine-pings: a ping flood for vine's live-migration network test, built statically into the
 * guest kit.
 *
 *   vine-pings TARGET [INTERVAL_MS]
 *
 * Sends an ICMP echo request to TARGET (an IPv4 address) every INTERVAL_MS milliseconds
 * (default 10) for as long as it runs, and counts the replies that match (its own identifier,
 * a sequence number it sent). Every second it prints
 *   VINE-PINGS sent=S recv=R gap=G
 * S and R are running totals; G is the longest run of consecutive requests, so far, whose
 * replies never came, in requests. Whoever reads two lines some seconds apart knows how many
 * replies were lost in between (a reply is late by at most a few intervals).
 */
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 65536 /* sequence numbers are 16 bits */

static uint16_t checksum(const void *data, size_t len) {
    const uint8_t *p = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += (uint32_t)(p[len - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: vine-pings TARGET [INTERVAL_MS]\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        printf("VINE-ERROR vine-pings: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    int interval = argc > 2 ? atoi(argv[2]) : 10;
    if (interval < 1)
        interval = 10;
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (s < 0) {
        printf("VINE-ERROR vine-pings: no raw socket\n");
        return 1;
    }
    static uint8_t answered[WINDOW];
    uint16_t id = (uint16_t)getpid();
    uint64_t sent = 0, got = 0, gap = 0, run = 0, checked = 0;
    uint64_t next = now_ms(), report = next + 1000;
    for (;;) {
        uint64_t t = now_ms();
        if (t >= next) {
            /* A request sent 200 intervals ago had its chance: count it now, answered or not. */
            if (sent >= 200) {
                while (checked < sent - 200) {
                    if (answered[checked % WINDOW]) {
                        run = 0;
                    } else if (++run > gap) {
                        gap = run;
                    }
                    answered[checked % WINDOW] = 0;
                    checked++;
                }
            }
            struct icmphdr h = {.type = ICMP_ECHO};
            h.un.echo.id = htons(id);
            h.un.echo.sequence = htons((uint16_t)(sent % WINDOW));
            answered[sent % WINDOW] = 0;
            h.checksum = checksum(&h, sizeof h);
            if (sendto(s, &h, sizeof h, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof h)
                sent++;
            next += (uint64_t)interval;
            if (next < t)
                next = t + (uint64_t)interval;
        }
        if (t >= report) {
            printf("VINE-PINGS sent=%llu recv=%llu gap=%llu\n", (unsigned long long)sent,
                   (unsigned long long)got, (unsigned long long)gap);
            fflush(stdout);
            report += 1000;
        }
        struct pollfd p = {.fd = s, .events = POLLIN};
        int wait = (int)(next > now_ms() ? next - now_ms() : 0);
        if (poll(&p, 1, wait) > 0) {
            uint8_t buf[1500];
            ssize_t n = recv(s, buf, sizeof buf, 0);
            if (n < (ssize_t)sizeof(struct iphdr))
                continue;
            size_t ihl = (size_t)(buf[0] & 0x0f) * 4;
            if ((size_t)n < ihl + sizeof(struct icmphdr))
                continue;
            struct icmphdr *r = (struct icmphdr *)(buf + ihl);
            if (r->type != ICMP_ECHOREPLY || ntohs(r->un.echo.id) != id)
                continue;
            uint16_t seq = ntohs(r->un.echo.sequence);
            if (!answered[seq]) {
                answered[seq] = 1;
                got++;
            }
        }
    }
}
