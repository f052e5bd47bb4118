/*
 * vine-load: a guest whose CPU load follows a schedule, built statically into the guest kit
 * (vine.load=PCT:SECS,PCT:SECS,...). Each phase keeps one vCPU busy PCT % of the time for SECS
 * seconds (busy, then asleep, in slices of 100 ms); the last phase lasts for as long as the
 * guest runs. The schedule counts from the guest's boot on its monotonic clock, so it goes on
 * where it was after a pause, a save and restore or a live migration. Prints at each phase:
 *   VINE-LOAD <phase> <PCT>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLICE_NS 100000000L /* 100 ms */
#define MAX_PHASES 64

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void nap(long long ns) {
    struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (nanosleep(&t, &t) != 0) {
    }
}

int main(int argc, char **argv) {
    int pct[MAX_PHASES];
    long secs[MAX_PHASES];
    int n = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: vine-load PCT:SECS[,PCT:SECS...]\n");
        return 2;
    }
    char *spec = strdup(argv[1]);
    for (char *tok = strtok(spec, ","); tok && n < MAX_PHASES; tok = strtok(NULL, ",")) {
        char *colon = strchr(tok, ':');
        pct[n] = atoi(tok);
        secs[n] = colon ? atol(colon + 1) : 0;
        if (pct[n] < 0 || pct[n] > 100 || secs[n] < 0) {
            printf("VINE-ERROR vine-load phase '%s': PCT must be 0 to 100, SECS 0 or more\n", tok);
            return 2;
        }
        n++;
    }
    if (n == 0) {
        printf("VINE-ERROR vine-load: no phase in '%s'\n", argv[1]);
        return 2;
    }
    /* The schedule starts at boot: CLOCK_MONOTONIC counts from it. */
    long long end = 0;
    volatile unsigned long spin = 0;
    for (int p = 0; p < n; p++) {
        end += secs[p] * 1000000000LL;
        printf("VINE-LOAD %d %d\n", p, pct[p]);
        fflush(stdout);
        while (p == n - 1 || now_ns() < end) {
            long long slice = now_ns();
            long long busy = SLICE_NS * pct[p] / 100;
            while (now_ns() - slice < busy) {
                spin++;
            }
            long long left = SLICE_NS - (now_ns() - slice);
            if (left > 0) {
                nap(left);
            }
        }
    }
    return 0;
}
