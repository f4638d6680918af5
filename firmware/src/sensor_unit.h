/*
 * sensor_unit: one raw reading of the unit (FSR ADC counts, MPU-6050 registers) turned
 * into one frame in wire units and the body frame. Portable C99: compiled into the
 * firmware and into the host test library (tests/test_firmware_frame.py), so everything
 * between the hardware registers and the wire bytes is tested on the host.
 *
 * Body frame (docs/protocol.md): x toward the toes, y to the subject's left, z up when
 * standing, right-handed. Mountings and their rotations: docs/firmware.md.
 */
#ifndef SENSOR_UNIT_H
#define SENSOR_UNIT_H

#include <stdint.h>

#include "fes_frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MPU-6050 at +-16 g (2048 LSB/g) and +-2000 deg/s (16.4 LSB/(deg/s)), in Q16:
 * 0.01 m/s^2 counts = raw * 980.665 / 2048, 0.1 deg/s counts = raw * 10 / 16.4. */
#define FES_ACC_Q16 31381L   /* round(65536 * 980.665 / 2048) */
#define FES_GYRO_Q16 39961L  /* round(65536 * 10 / 16.4) */

/* Mountings (docs/firmware.md); body = R * sensor, R a signed permutation, det +1. */
#define FES_MOUNT_DORSUM 0          /* flat on the instep, parts up, X arrow to the toes */
#define FES_MOUNT_DORSUM_REVERSED 1 /* flat on the instep, parts up, X arrow to the heel */
#define FES_MOUNT_RIGHT_LATERAL 2   /* outer side of the right shoe, parts out, X to toes */
#define FES_MOUNT_LEFT_LATERAL 3    /* outer side of the left shoe, parts out, X to toes */
#define FES_MOUNT_COUNT 4

/* Row-major 3x3: fes_mountings[m][3 * body_axis + sensor_axis]. */
extern const int8_t fes_mountings[FES_MOUNT_COUNT][9];

/* One point of the FSR calibration: ADC counts -> force in 0.1 N. */
typedef struct fes_fsr_point {
    uint16_t counts;
    uint16_t force_dn;
} fes_fsr_point_t;

/* The calibration the firmware applies (fsr_table.h, made by tools/fsr_table.py). */
extern const fes_fsr_point_t fes_fsr_table[];
extern const uint8_t fes_fsr_table_len;
extern const uint16_t fes_fsr_short_max_counts; /* counts <= this: FSR line shorted */
extern const uint16_t fes_fsr_open_min_counts;  /* counts >= this: FSR line open */

typedef struct fes_unit_sample {
    uint8_t heel_fitted;   /* the build has an FSR (HEEL=1) */
    uint16_t heel_counts;  /* 10-bit ADC result, 0..1023 */
    uint8_t imu_ok;        /* the IMU answered WHO_AM_I and this burst read */
    int16_t imu_raw[6];    /* sensor axes, registers 0x3B..0x48 without temperature:
                            * acc X, Y, Z, gyro X, Y, Z (raw LSB) */
    uint8_t low_battery;   /* supply below the low-battery threshold (fes_low_battery) */
} fes_unit_sample_t;

/* Supply check: the ADC measures the internal 1.1 V bandgap against AVcc. */
#define FES_VCC_HYSTERESIS_MV 100u

/*
 * AVcc in mV from a 10-bit conversion of the bandgap against AVcc:
 * vcc = bandgap_mv * 1024 / counts, rounded; 0xFFFF when counts is 0 (no reading).
 */
uint16_t fes_vcc_mv(uint16_t counts, uint16_t bandgap_mv);

/*
 * Low-battery state with hysteresis: becomes 1 below low_mv, back to 0 only at or above
 * low_mv + FES_VCC_HYSTERESIS_MV (a sagging supply does not toggle the flag per sample).
 * low_mv 0 disables the check (always 0).
 */
uint8_t fes_low_battery(uint8_t was_low, uint16_t vcc_mv, uint16_t low_mv);

/*
 * Piecewise-linear lookup: table sorted by strictly increasing counts (n >= 1);
 * between two points the force is interpolated (rounded half away from zero),
 * outside the table it is the nearest end point's force.
 */
uint16_t fes_fsr_force_dn(uint16_t counts, const fes_fsr_point_t *table, uint8_t n);

/* 1 when counts sit on an ADC rail (open or shorted FSR line, see fsr_table.h). */
uint8_t fes_heel_fault(uint16_t counts);

/*
 * Rotate raw IMU registers (sensor axes) into the body frame with R and scale to wire
 * units. Returns 1 when any raw axis is at full scale (-32768 or 32767): the IMU
 * saturated, and the value is then clipped, not trusted.
 */
uint8_t fes_imu_to_body(const int16_t raw[6], const int8_t rot[9], int16_t acc[3],
                        int16_t gyro[3]);

/*
 * Fill *out from one sample. Flags: heel present when fitted, heel fault (force 0,
 * raw counts kept) on a rail; IMU present only when it answered, saturated when any
 * axis is at full scale; absent channels are all zero; low battery as sampled. Tilt is
 * not computed on board.
 */
void fes_unit_frame(const fes_unit_sample_t *sample, const int8_t rot[9], uint16_t seq,
                    uint32_t timestamp_us, fes_frame_t *out);

#ifdef __cplusplus
}
#endif

#endif /* SENSOR_UNIT_H */
