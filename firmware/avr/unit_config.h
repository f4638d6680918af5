/*
 * unit_config: the build options of the sensor unit (set by firmware/Makefile) and the
 * compile-time checks that refuse a unit the host could not trust: a baud the AVR does not
 * make exactly, a sample rate without whole-microsecond timestamps, a link too slow for
 * the rate, an unknown mounting. The arithmetic is fes_plan.h's, which the host tests check.
 */
#ifndef UNIT_CONFIG_H
#define UNIT_CONFIG_H

#include "fes_plan.h"
#include "sensor_unit.h"

#ifndef F_CPU
#error "F_CPU is not set: build with firmware/Makefile"
#endif
#ifndef FES_BAUD
#define FES_BAUD 1000000UL
#endif
#ifndef FES_RATE_HZ
#define FES_RATE_HZ 100u
#endif
#ifndef FES_MOUNT
#define FES_MOUNT FES_MOUNT_DORSUM
#endif
#ifndef FES_HEEL
#define FES_HEEL 1
#endif
#ifndef FES_IMU
#define FES_IMU 1
#endif
#ifndef FES_BANDGAP_MV
#define FES_BANDGAP_MV 1100u /* ATmega328P datasheet: 1.0..1.2 V, 1.1 V typical */
#endif
#ifndef FES_LOW_VCC_MV
#define FES_LOW_VCC_MV 4400u /* 0: no low-battery check */
#endif
#ifndef FES_TWI_HZ
#define FES_TWI_HZ 400000UL /* I2C fast mode, the MPU-6050's maximum */
#endif

#if FES_RATE_HZ < FES_RATE_MIN_HZ || FES_RATE_HZ > FES_RATE_MAX_HZ
#error "RATE_HZ must be within 100..1000 Hz"
#endif
#if !FES_SAMPLE_EXACT(F_CPU, FES_RATE_HZ)
#error "RATE_HZ must divide 1000000 (whole-microsecond period): 100 125 160 200 250 320 400 500 625 800 1000"
#endif
#if FES_SAMPLE_TICKS(F_CPU, FES_RATE_HZ) > 65536
#error "RATE_HZ: the sample period does not fit Timer1 (16 bits at prescaler 8)"
#endif

#if FES_BAUD_EXACT(F_CPU, FES_BAUD, 0)
#define FES_U2X 0
#elif FES_BAUD_EXACT(F_CPU, FES_BAUD, 1)
#define FES_U2X 1
#else
#error "BAUD is not made exactly from F_CPU (16 MHz: 1000000, 500000, 250000, 200000, 125000, 100000, ...); 921600 and 115200 are not"
#endif
#define FES_UBRR_VALUE FES_UBRR(F_CPU, FES_BAUD, FES_U2X)

#if !FES_LINK_FITS(FES_BAUD, FES_RATE_HZ)
#error "BAUD too slow for RATE_HZ: a 33-byte frame (330 bits) per sample may use at most 90 % of the link"
#endif

#if FES_MOUNT < 0 || FES_MOUNT >= FES_MOUNT_COUNT
#error "MOUNT: unknown mounting (sensor_unit.h lists them)"
#endif
#if FES_HEEL != 0 && FES_HEEL != 1
#error "HEEL must be 0 or 1"
#endif
#if FES_IMU != 0 && FES_IMU != 1
#error "IMU must be 0 or 1"
#endif
#if FES_HEEL == 0 && FES_IMU == 0
#error "HEEL=0 IMU=0: a unit without sensors"
#endif

#define FES_TWBR ((F_CPU / FES_TWI_HZ - 16UL) / 2UL)
#if (F_CPU / FES_TWI_HZ - 16UL) % 2UL != 0 || FES_TWBR > 255 || F_CPU / FES_TWI_HZ < 16UL
#error "TWI_HZ: no TWBR (prescaler 1) makes this I2C clock"
#endif

#endif /* UNIT_CONFIG_H */
