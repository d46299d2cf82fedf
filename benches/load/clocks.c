/* The cost of one clock_gettime per clock, through the vDSO: 10 M reads of each.
 *
 *     gcc -O2 benches/load/clocks.c -o /tmp/clocks && /tmp/clocks
 *
 * src/clock.rs reads CLOCK_MONOTONIC_COARSE for the engines' millisecond stamps because of what
 * this prints (benches/RESULTS.md, 2026-12-03 15:25). */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const clockid_t ids[] = {CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, CLOCK_REALTIME,
                             CLOCK_REALTIME_COARSE};
    const char *names[] = {"MONOTONIC", "MONOTONIC_COARSE", "REALTIME", "REALTIME_COARSE"};
    const int reads = 10000000;
    struct timespec t;
    long sum = 0;
    for (int k = 0; k < 4; k++) {
        double start = now();
        for (int i = 0; i < reads; i++) {
            clock_gettime(ids[k], &t);
            sum += t.tv_nsec;
        }
        printf("%-18s %.1f ns a read\n", names[k], (now() - start) * 1e9 / reads);
    }
    return sum == 42; /* keeps the reads from being optimised away */
}
