/*
 * vine-hold: a guest whose memory use follows a schedule, built statically into the guest kit
 * (vine.hold=MB:SECS,MB:SECS,...). Each phase holds MB MiB of anonymous memory (every page
 * written) for SECS seconds; the last phase lasts for as long as the guest runs. Memory grows
 * by at most STEP_MB MiB a second, as a workload's would, and is given back at once. The
 * schedule counts from the guest's boot on its monotonic clock. Prints when a phase's memory
 * is held:
 *   VINE-HOLD <phase> <MB>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MIB (1024L * 1024L)
#define STEP_MB 8
#define MAX_PHASES 64
#define MAX_MB 65536

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

int main(int argc, char **argv) {
    long mb[MAX_PHASES];
    long secs[MAX_PHASES];
    int n = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: vine-hold MB:SECS[,MB:SECS...]\n");
        return 2;
    }
    char *spec = strdup(argv[1]);
    for (char *tok = strtok(spec, ","); tok && n < MAX_PHASES; tok = strtok(NULL, ",")) {
        char *colon = strchr(tok, ':');
        mb[n] = atol(tok);
        secs[n] = colon ? atol(colon + 1) : 0;
        if (mb[n] < 0 || mb[n] > MAX_MB || secs[n] < 0) {
            printf("VINE-ERROR vine-hold phase '%s': MB must be 0 to %d, SECS 0 or more\n", tok, MAX_MB);
            return 2;
        }
        n++;
    }
    if (n == 0) {
        printf("VINE-ERROR vine-hold: no phase in '%s'\n", argv[1]);
        return 2;
    }
    static char *chunks[MAX_MB];
    long held = 0;
    long long end = 0;
    for (int p = 0; p < n; p++) {
        end += secs[p] * 1000000000LL;
        int told = 0;
        while (p == n - 1 || now_ns() < end) {
            while (held > mb[p]) {
                munmap(chunks[--held], MIB);
            }
            for (int i = 0; i < STEP_MB && held < mb[p]; i++) {
                char *c = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (c == MAP_FAILED) {
                    break;
                }
                memset(c, 0x5a, MIB);
                chunks[held++] = c;
            }
            if (held == mb[p] && !told) {
                printf("VINE-HOLD %d %ld\n", p, held);
                fflush(stdout);
                told = 1;
            }
            nap_ms(1000);
        }
    }
    return 0;
}
