/*
 * fes_plan: the sensor unit's clock arithmetic (UART baud divisor, sample timer), as macros
 * the AVR build checks at compile time (firmware/avr/unit_config.h) and as functions the host
 * tests call (tests/test_firmware_plan.py) and firmware/tools/print_plan.c prints. One
 * formula for both, so what the build accepts is what the test checked.
 *
 * UART (ATmega328P USART0, asynchronous): baud = f_cpu / (K * (UBRR + 1)), K = 16, or 8
 * with U2X. Sample clock: Timer1 in CTC mode, prescaler 8: one compare match every
 * f_cpu / 8 / rate_hz timer ticks (OCR1A = that - 1).
 */
#ifndef FES_PLAN_H
#define FES_PLAN_H

#include <stdint.h>

#include "fes_frame.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FES_RATE_MIN_HZ 100u
#define FES_RATE_MAX_HZ 1000u
#define FES_TIMER_PRESCALER 8u
#define FES_UBRR_MAX 4095u
/* 8N1: a start bit, 8 data bits and a stop bit per byte */
#define FES_FRAME_BITS (10u * FES_FRAME_LEN)
/* a frame may fill at most this per cent of the link: the rest absorbs loop jitter */
#define FES_LINK_MAX_PERCENT 90UL

/* divisor K of the USART: 16, or 8 with U2X */
#define FES_UART_K(u2x) ((u2x) ? 8u : 16u)
/* nearest UBRR for baud (may be out of range: check with FES_UBRR_OK) */
#define FES_UBRR(f_cpu, baud, u2x) \
    (((f_cpu) + FES_UART_K(u2x) * (baud) / 2u) / (FES_UART_K(u2x) * (baud)) - 1u)
#define FES_UBRR_OK(f_cpu, baud, u2x) \
    ((f_cpu) >= FES_UART_K(u2x) * (baud) && FES_UBRR(f_cpu, baud, u2x) <= FES_UBRR_MAX)
/* the baud the USART really makes with that UBRR */
#define FES_BAUD_ACTUAL(f_cpu, baud, u2x) \
    ((f_cpu) / (FES_UART_K(u2x) * (FES_UBRR(f_cpu, baud, u2x) + 1u)))
/* the baud is made exactly: f_cpu is a multiple of K * baud */
#define FES_BAUD_EXACT(f_cpu, baud, u2x) \
    (FES_UBRR_OK(f_cpu, baud, u2x) && (f_cpu) % (FES_UART_K(u2x) * (baud)) == 0u)
/* timer ticks per sample; exact when f_cpu / 8 is a multiple of rate_hz */
#define FES_SAMPLE_TICKS(f_cpu, rate_hz) ((f_cpu) / FES_TIMER_PRESCALER / (rate_hz))
#define FES_SAMPLE_EXACT(f_cpu, rate_hz) \
    ((f_cpu) / FES_TIMER_PRESCALER % (rate_hz) == 0u && 1000000u % (rate_hz) == 0u)
/* a frame leaves before the next one is due, with FES_LINK_MAX_PERCENT of the link */
#define FES_LINK_FITS(baud, rate_hz) \
    (FES_FRAME_BITS * (rate_hz) * 100UL <= (baud) * FES_LINK_MAX_PERCENT)

typedef struct fes_uart_plan {
    uint16_t ubrr;
    uint8_t u2x;
    uint32_t actual_baud;
    int32_t error_ppm; /* (actual - asked) / asked, in parts per million */
} fes_uart_plan_t;

typedef struct fes_sample_plan {
    uint16_t ocr;       /* OCR1A: timer ticks per sample - 1 */
    uint32_t period_us; /* sample period, whole microseconds */
} fes_sample_plan_t;

/*
 * The UBRR/U2X with the smallest baud error (U2X off when both are as good: it samples each
 * received bit 16 times instead of 8). Returns 1 when the baud is made exactly (error 0),
 * 0 when it is not or no UBRR fits; *out is filled whenever a UBRR fits, else zeroed.
 */
uint8_t fes_uart_plan(uint32_t f_cpu, uint32_t baud, fes_uart_plan_t *out);

/*
 * Timer1 compare value and period for rate_hz. Returns 1 when rate_hz is within
 * FES_RATE_MIN_HZ..FES_RATE_MAX_HZ, the tick count is a whole number that fits 16 bits and
 * the period is a whole number of microseconds (so timestamps are exact); else 0, *out zeroed.
 */
uint8_t fes_sample_plan(uint32_t f_cpu, uint16_t rate_hz, fes_sample_plan_t *out);

/* 1 when frames at rate_hz use at most FES_LINK_MAX_PERCENT of an 8N1 link at baud. */
uint8_t fes_link_fits(uint32_t baud, uint16_t rate_hz);

#ifdef __cplusplus
}
#endif

#endif /* FES_PLAN_H */
