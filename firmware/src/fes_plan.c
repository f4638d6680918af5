/* fes_plan: UART divisor and sample timer of the sensor unit. See fes_plan.h. */
#include "fes_plan.h"

static void plan_for(uint32_t f_cpu, uint32_t baud, uint8_t u2x, fes_uart_plan_t *out)
{
    int64_t diff;

    out->u2x = u2x;
    out->ubrr = (uint16_t)FES_UBRR(f_cpu, baud, u2x);
    out->actual_baud = FES_BAUD_ACTUAL(f_cpu, baud, u2x);
    diff = (int64_t)out->actual_baud - (int64_t)baud;
    /* rounded half away from zero, like the rest of the firmware */
    out->error_ppm = (int32_t)((diff * 1000000 + (diff >= 0 ? 1 : -1) * (int64_t)(baud / 2)) /
                               (int64_t)baud);
}

static uint32_t abs32(int32_t v)
{
    return v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
}

uint8_t fes_uart_plan(uint32_t f_cpu, uint32_t baud, fes_uart_plan_t *out)
{
    fes_uart_plan_t normal, doubled;
    uint8_t have_normal, have_doubled;

    out->ubrr = 0;
    out->u2x = 0;
    out->actual_baud = 0;
    out->error_ppm = 0;
    if (baud == 0u)
        return 0;
    have_normal = FES_UBRR_OK(f_cpu, baud, 0u);
    have_doubled = FES_UBRR_OK(f_cpu, baud, 1u);
    if (have_normal)
        plan_for(f_cpu, baud, 0u, &normal);
    if (have_doubled)
        plan_for(f_cpu, baud, 1u, &doubled);
    if (have_normal && (!have_doubled || abs32(normal.error_ppm) <= abs32(doubled.error_ppm)))
        *out = normal;
    else if (have_doubled)
        *out = doubled;
    else
        return 0;
    return FES_BAUD_EXACT(f_cpu, baud, out->u2x) ? 1u : 0u;
}

uint8_t fes_sample_plan(uint32_t f_cpu, uint16_t rate_hz, fes_sample_plan_t *out)
{
    uint32_t ticks;

    out->ocr = 0;
    out->period_us = 0;
    if (rate_hz < FES_RATE_MIN_HZ || rate_hz > FES_RATE_MAX_HZ || !FES_SAMPLE_EXACT(f_cpu, rate_hz))
        return 0;
    ticks = FES_SAMPLE_TICKS(f_cpu, rate_hz);
    if (ticks < 2u || ticks > 65536u)
        return 0;
    out->ocr = (uint16_t)(ticks - 1u);
    out->period_us = 1000000u / rate_hz;
    return 1;
}

uint8_t fes_link_fits(uint32_t baud, uint16_t rate_hz)
{
    return FES_LINK_FITS(baud, rate_hz) ? 1u : 0u;
}
