/*
 * print_plan: what a sensor-unit build will do on the wire, from fes_plan.c (the arithmetic
 * unit_config.h checks at compile time). Built for the host by firmware/Makefile.
 *     print_plan F_CPU BAUD RATE_HZ
 * Prints the UART divisor and its error, the sample timer and the link load; exits 1 when
 * the baud is not exact, the rate has no exact timer period or the link is too slow.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fes_plan.h"

int main(int argc, char **argv)
{
    fes_uart_plan_t uart;
    fes_sample_plan_t clock;
    unsigned long f_cpu, baud, rate;
    int ok = 1;

    if (argc != 4) {
        fprintf(stderr, "usage: print_plan F_CPU BAUD RATE_HZ\n");
        return 2;
    }
    f_cpu = strtoul(argv[1], NULL, 10);
    baud = strtoul(argv[2], NULL, 10);
    rate = strtoul(argv[3], NULL, 10);
    if (!fes_uart_plan((uint32_t)f_cpu, (uint32_t)baud, &uart)) {
        ok = 0;
        if (uart.actual_baud)
            printf("uart: %lu Bd is NOT exact from %lu Hz: nearest UBRR0=%u U2X0=%u makes %lu Bd, "
                   "error %+.3f %%\n", baud, f_cpu, uart.ubrr, uart.u2x,
                   (unsigned long)uart.actual_baud, uart.error_ppm / 10000.0);
        else
            printf("uart: %lu Bd cannot be made from %lu Hz\n", baud, f_cpu);
    } else {
        printf("uart: %lu Bd = %lu Hz / (%u x (UBRR0 %u + 1)), U2X0=%u, error %+.3f %% (%ld ppm)\n",
               baud, f_cpu, uart.u2x ? 8u : 16u, uart.ubrr, uart.u2x, uart.error_ppm / 10000.0,
               (long)uart.error_ppm);
    }
    if (rate > 0xFFFFul || !fes_sample_plan((uint32_t)f_cpu, (uint16_t)rate, &clock)) {
        ok = 0;
        printf("sample clock: %lu Hz has no exact Timer1 period (100..1000 Hz dividing 1000000)\n",
               rate);
    } else {
        printf("sample clock: %lu Hz = Timer1 CTC, prescaler %u, OCR1A %u, period %lu us exactly\n",
               rate, FES_TIMER_PRESCALER, clock.ocr, (unsigned long)clock.period_us);
    }
    printf("link: %u-byte frames at %lu Hz use %.1f %% of %lu Bd (at most %lu %% allowed)\n",
           FES_FRAME_LEN, rate, baud ? 100.0 * FES_FRAME_BITS * (double)rate / (double)baud : 0.0,
           baud, FES_LINK_MAX_PERCENT);
    if (rate > 0xFFFFul || !fes_link_fits((uint32_t)baud, (uint16_t)rate))
        ok = 0;
    return ok ? 0 : 1;
}
