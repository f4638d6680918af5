/*
 * Reference sensor unit: ATmega328P at 16 MHz (Arduino Uno/Nano), heel FSR on A0, MPU-6050
 * (GY-521 breakout) on I2C, one frame (docs/protocol.md) per tick of Timer1 on the UART.
 * Wiring, build and flashing: docs/firmware.md. This file only sequences the hardware; what
 * a reading becomes is sensor_unit.c's (tested on the host).
 *
 * Per tick: start the ADC (FSR, and once a second the supply), read the IMU's 14 data
 * registers while it converts, build and encode the frame, queue it for the UART interrupt,
 * sleep. seq and timestamp_us count ticks, so a tick the loop missed is a sequence gap the
 * host sees, never a silently stretched period. The watchdog resets a unit whose loop stops;
 * the host then sees no frames (a stale fault) rather than old ones.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <util/delay.h>

#include "adc.h"
#include "fes_frame.h"
#include "mpu6050.h"
#include "sensor_unit.h"
#include "twi.h"
#include "uart.h"
#include "unit_config.h"

#define PERIOD_US (1000000UL / FES_RATE_HZ)
#define TICKS_PER_S FES_RATE_HZ
#define IMU_SETTLE_TICKS ((MPU6050_SETTLE_MS * FES_RATE_HZ + 999u) / 1000u)
#define IMU_CHECK_TICKS (FES_RATE_HZ / 10u) /* read the configuration back at 10 Hz */

enum imu_state { IMU_ABSENT, IMU_SETTLING, IMU_OK };

/* MCUSR at reset (why the unit restarted), kept for a debugger; .noinit: not cleared */
uint8_t reset_cause __attribute__((section(".noinit")));

/* A watchdog reset leaves the watchdog running at its shortest period: stop it before
 * .data/.bss initialisation could outlast it. */
void early_watchdog_off(void) __attribute__((naked, used, section(".init3")));
void early_watchdog_off(void)
{
    reset_cause = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

static volatile uint8_t pending_ticks;

ISR(TIMER1_COMPA_vect)
{
    if (pending_ticks != 0xFFu)
        pending_ticks++;
}

static void sample_clock_start(void)
{
    TCCR1A = 0;
    TCNT1 = 0;
    OCR1A = (uint16_t)(FES_SAMPLE_TICKS(F_CPU, FES_RATE_HZ) - 1u);
    TIMSK1 = _BV(OCIE1A);
    TCCR1B = _BV(WGM12) | _BV(CS11); /* CTC on OCR1A, clk/8: 0.5 us per timer tick */
}

static uint8_t take_ticks(void)
{
    uint8_t n;

    for (;;) {
        cli();
        n = pending_ticks;
        if (n) {
            pending_ticks = 0;
            sei();
            return n;
        }
        sleep_enable();
        sei(); /* the instruction after sei runs before any interrupt: no lost wake-up */
        sleep_cpu();
        sleep_disable();
    }
}

static uint8_t imu_config_ok(void)
{
    uint8_t cfg[MPU6050_CONFIG_LEN], pwr;

    return twi_read_regs(MPU6050_ADDR, MPU6050_REG_SMPLRT_DIV, cfg, MPU6050_CONFIG_LEN) &&
           twi_read_regs(MPU6050_ADDR, MPU6050_REG_PWR_MGMT_1, &pwr, 1) &&
           fes_mpu6050_config_ok(cfg, pwr, FES_RATE_HZ);
}

/* Identify and configure the IMU; with reset, a full device reset first (boot only: 100 ms). */
static uint8_t imu_start(uint8_t reset)
{
    fes_reg_write_t writes[MPU6050_INIT_WRITES];
    uint8_t who = 0, i, n;

    if (!twi_read_regs(MPU6050_ADDR, MPU6050_REG_WHO_AM_I, &who, 1) ||
        who != MPU6050_WHO_AM_I_VALUE)
        return 0;
    if (reset) {
        if (!twi_write_reg(MPU6050_ADDR, MPU6050_REG_PWR_MGMT_1, MPU6050_PWR_RESET))
            return 0;
        _delay_ms(100);
    }
    n = fes_mpu6050_init_writes(FES_RATE_HZ, writes);
    for (i = 0; i < n; i++)
        if (!twi_write_reg(MPU6050_ADDR, writes[i].reg, writes[i].value))
            return 0;
    return imu_config_ok();
}

int main(void)
{
    static fes_unit_sample_t sample;
    static fes_frame_t frame;
    static uint8_t wire[FES_FRAME_LEN];
    uint8_t imu = IMU_ABSENT, low_battery = 0;
    uint16_t seq = 0xFFFFu, imu_wait = 0, vcc_wait = 0, check_wait = 0;
    uint32_t t_us = 0u - PERIOD_US; /* the first tick is seq 0 at 0 us */

    uart_init();
    adc_init();
    sei(); /* the ADC's interrupt is needed by nothing yet; the clock starts below */
    if (FES_IMU) {
        twi_init();
        _delay_ms(100); /* the MPU-6050's start-up after power-on */
        if (imu_start(1)) {
            imu = IMU_SETTLING;
            imu_wait = IMU_SETTLE_TICKS;
        }
    }
    sample.heel_fitted = FES_HEEL;
    SMCR = 0; /* sleep mode idle (SM2..0 = 000): Timer1, the UART and the ADC run on */
    wdt_enable(WDTO_60MS);
    sample_clock_start();

    for (;;) {
        uint8_t n = take_ticks();
        uint8_t vcc_due = 0, check_due = 0;
        uint16_t heel_counts, bandgap_counts;

        wdt_reset();
        seq = (uint16_t)(seq + n);
        t_us += (uint32_t)n * PERIOD_US;
        if (vcc_wait <= n) {
            vcc_wait = TICKS_PER_S;
            vcc_due = FES_LOW_VCC_MV != 0u;
        } else {
            vcc_wait = (uint16_t)(vcc_wait - n);
        }
        adc_start(vcc_due);

        if (FES_IMU && imu != IMU_ABSENT) {
            uint8_t burst[MPU6050_BURST_LEN];

            if (check_wait <= n) {
                check_wait = IMU_CHECK_TICKS;
                check_due = 1;
            } else {
                check_wait = (uint16_t)(check_wait - n);
            }
            if (twi_read_regs(MPU6050_ADDR, MPU6050_REG_ACCEL_XOUT_H, burst, MPU6050_BURST_LEN) &&
                (!check_due || imu_config_ok())) {
                fes_mpu6050_raw(burst, sample.imu_raw);
                if (imu == IMU_SETTLING && imu_wait <= n)
                    imu = IMU_OK;
                else if (imu == IMU_SETTLING)
                    imu_wait = (uint16_t)(imu_wait - n);
            } else {
                /* lost or reconfigured (a brown-out resets it to +-2 g): absent until it is
                 * configured and settled again; retried once a second */
                imu = IMU_ABSENT;
                imu_wait = TICKS_PER_S;
                twi_recover();
            }
        } else if (FES_IMU) {
            if (imu_wait <= n) {
                imu_wait = TICKS_PER_S;
                if (imu_start(0)) {
                    imu = IMU_SETTLING;
                    imu_wait = IMU_SETTLE_TICKS;
                } else {
                    twi_recover();
                }
            } else {
                imu_wait = (uint16_t)(imu_wait - n);
            }
        }

        adc_finish(&heel_counts, &bandgap_counts);
        if (vcc_due)
            low_battery = fes_low_battery(low_battery, fes_vcc_mv(bandgap_counts, FES_BANDGAP_MV),
                                          FES_LOW_VCC_MV);
        sample.heel_counts = heel_counts;
        sample.imu_ok = imu == IMU_OK;
        sample.low_battery = low_battery;
        fes_unit_frame(&sample, fes_mountings[FES_MOUNT], seq, t_us, &frame);
        fes_frame_encode(&frame, wire);
        uart_send(wire); /* busy only if this loop overran: the host counts the gap */
    }
}
