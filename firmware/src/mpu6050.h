/*
 * mpu6050: what the sensor unit needs of the InvenSense MPU-6050 (on the GY-521 breakout),
 * without the bus: register map, the configuration the frame's units assume, the check of
 * that configuration read back from the chip, and the burst-read layout. Portable C99; the
 * I2C transfers are in firmware/avr/twi.c.
 *
 * Ranges: +-16 g (2048 LSB/g) and +-2000 deg/s (16.4 LSB/(deg/s)), the scaling
 * sensor_unit.h applies; the frame holds +-327 m/s^2 and +-3276 deg/s, so neither range
 * clips in the frame. A chip that lost this configuration (a brown-out resets it to +-2 g,
 * +-250 deg/s, asleep) would be scaled 8x wrong: fes_mpu6050_config_ok catches that.
 */
#ifndef MPU6050_H
#define MPU6050_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPU6050_ADDR 0x68u /* 7-bit address with AD0 low (the GY-521 pulls AD0 down) */

#define MPU6050_REG_SMPLRT_DIV 0x19u
#define MPU6050_REG_CONFIG 0x1Au
#define MPU6050_REG_GYRO_CONFIG 0x1Bu
#define MPU6050_REG_ACCEL_CONFIG 0x1Cu
#define MPU6050_REG_ACCEL_XOUT_H 0x3Bu
#define MPU6050_REG_PWR_MGMT_1 0x6Bu
#define MPU6050_REG_WHO_AM_I 0x75u

#define MPU6050_WHO_AM_I_VALUE 0x68u
#define MPU6050_PWR_RESET 0x80u      /* PWR_MGMT_1: device reset (wait 100 ms after) */
#define MPU6050_PWR_CLK_PLL_X 0x01u  /* PWR_MGMT_1: awake, clock from the X gyro PLL */
#define MPU6050_GYRO_FS_2000 0x18u   /* GYRO_CONFIG FS_SEL = 3 */
#define MPU6050_ACCEL_FS_16G 0x18u   /* ACCEL_CONFIG AFS_SEL = 3 */

/* ACCEL_XOUT_H..GYRO_ZOUT_L: acc X Y Z, temperature, gyro X Y Z, big-endian int16 each */
#define MPU6050_BURST_LEN 14u
/* SMPLRT_DIV..ACCEL_CONFIG read back in one burst */
#define MPU6050_CONFIG_LEN 4u
/* after waking (or reset), gyro outputs settle within 30 ms (datasheet: start-up time) */
#define MPU6050_SETTLE_MS 50u

/* One register write of the configuration. */
typedef struct fes_reg_write {
    uint8_t reg;
    uint8_t value;
} fes_reg_write_t;

#define MPU6050_INIT_WRITES 5u

/*
 * DLPF_CFG (register CONFIG) for a sample rate: the widest filter whose bandwidth is at most
 * half the sample rate (no aliasing of what the filter passes): 188 Hz from 400 Hz up
 * (cfg 1), 98 Hz from 200 Hz (cfg 2), 44 Hz below (cfg 3; 100 Hz is the lowest rate).
 */
uint8_t fes_mpu6050_dlpf(uint16_t rate_hz);

/*
 * The MPU6050_INIT_WRITES register writes, in order, that configure the chip for rate_hz:
 * wake on the gyro PLL, internal rate 1 kHz (SMPLRT_DIV 0 with the DLPF on), DLPF, +-2000
 * deg/s, +-16 g. Writes them to out and returns the count.
 */
uint8_t fes_mpu6050_init_writes(uint16_t rate_hz, fes_reg_write_t out[MPU6050_INIT_WRITES]);

/*
 * 1 when registers SMPLRT_DIV..ACCEL_CONFIG (cfg, as read back) and PWR_MGMT_1 are what
 * fes_mpu6050_init_writes wrote (self-test bits included: they must be off).
 */
uint8_t fes_mpu6050_config_ok(const uint8_t cfg[MPU6050_CONFIG_LEN], uint8_t pwr_mgmt_1,
                              uint16_t rate_hz);

/* Burst bytes from ACCEL_XOUT_H -> raw acc X, Y, Z, gyro X, Y, Z (temperature skipped). */
void fes_mpu6050_raw(const uint8_t burst[MPU6050_BURST_LEN], int16_t raw[6]);

#ifdef __cplusplus
}
#endif

#endif /* MPU6050_H */
