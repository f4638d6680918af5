/* mpu6050: configuration and register layout of the MPU-6050. See mpu6050.h. */
#include "mpu6050.h"

uint8_t fes_mpu6050_dlpf(uint16_t rate_hz)
{
    if (rate_hz >= 400u)
        return 1u;
    if (rate_hz >= 200u)
        return 2u;
    return 3u;
}

uint8_t fes_mpu6050_init_writes(uint16_t rate_hz, fes_reg_write_t out[MPU6050_INIT_WRITES])
{
    out[0].reg = MPU6050_REG_PWR_MGMT_1;
    out[0].value = MPU6050_PWR_CLK_PLL_X;
    out[1].reg = MPU6050_REG_SMPLRT_DIV;
    out[1].value = 0u;
    out[2].reg = MPU6050_REG_CONFIG;
    out[2].value = fes_mpu6050_dlpf(rate_hz);
    out[3].reg = MPU6050_REG_GYRO_CONFIG;
    out[3].value = MPU6050_GYRO_FS_2000;
    out[4].reg = MPU6050_REG_ACCEL_CONFIG;
    out[4].value = MPU6050_ACCEL_FS_16G;
    return MPU6050_INIT_WRITES;
}

uint8_t fes_mpu6050_config_ok(const uint8_t cfg[MPU6050_CONFIG_LEN], uint8_t pwr_mgmt_1,
                              uint16_t rate_hz)
{
    /* CONFIG bits 7..6 are reserved and EXT_SYNC_SET (5..3) must stay 0: compare whole bytes */
    return pwr_mgmt_1 == MPU6050_PWR_CLK_PLL_X && cfg[0] == 0u &&
           cfg[1] == fes_mpu6050_dlpf(rate_hz) && cfg[2] == MPU6050_GYRO_FS_2000 &&
           cfg[3] == MPU6050_ACCEL_FS_16G;
}

static int16_t be16(const uint8_t *p)
{
    /* two's complement from the register pair, defined for every bit pattern */
    uint16_t u = (uint16_t)((uint16_t)p[0] << 8 | p[1]);
    return u >= 0x8000u ? (int16_t)(-(int32_t)(0x10000ul - u)) : (int16_t)u;
}

void fes_mpu6050_raw(const uint8_t burst[MPU6050_BURST_LEN], int16_t raw[6])
{
    uint8_t i;

    for (i = 0; i < 3u; i++) {
        raw[i] = be16(burst + 2u * i);          /* ACCEL_?OUT at 0x3B, 0x3D, 0x3F */
        raw[3u + i] = be16(burst + 8u + 2u * i); /* GYRO_?OUT at 0x43, 0x45, 0x47 */
    }
}
