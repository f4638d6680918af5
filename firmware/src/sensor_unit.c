/* sensor_unit: raw reading -> frame. See sensor_unit.h and docs/firmware.md. */
#include "sensor_unit.h"

#include "fsr_table.h"

const int8_t fes_mountings[FES_MOUNT_COUNT][9] = {
    /* rows: body x, y, z; columns: sensor X, Y, Z */
    [FES_MOUNT_DORSUM] = {1, 0, 0, /**/ 0, 1, 0, /**/ 0, 0, 1},
    [FES_MOUNT_DORSUM_REVERSED] = {-1, 0, 0, /**/ 0, -1, 0, /**/ 0, 0, 1},
    [FES_MOUNT_RIGHT_LATERAL] = {1, 0, 0, /**/ 0, 0, -1, /**/ 0, 1, 0},
    [FES_MOUNT_LEFT_LATERAL] = {1, 0, 0, /**/ 0, 0, 1, /**/ 0, -1, 0},
};

const fes_fsr_point_t fes_fsr_table[] = FSR_TABLE_POINTS;
const uint8_t fes_fsr_table_len = (uint8_t)(sizeof fes_fsr_table / sizeof fes_fsr_table[0]);
const uint16_t fes_fsr_short_max_counts = FSR_SHORT_MAX_COUNTS;
const uint16_t fes_fsr_open_min_counts = FSR_OPEN_MIN_COUNTS;

static int32_t div_round(int32_t num, int32_t den)
{
    /* den > 0; half away from zero, the same on every compiler */
    return num >= 0 ? (num + den / 2) / den : -((-num + den / 2) / den);
}

uint16_t fes_fsr_force_dn(uint16_t counts, const fes_fsr_point_t *table, uint8_t n)
{
    uint8_t i;

    if (counts <= table[0].counts)
        return table[0].force_dn;
    for (i = 1; i < n; i++) {
        if (counts <= table[i].counts) {
            int32_t f0 = table[i - 1].force_dn, f1 = table[i].force_dn;
            int32_t c0 = table[i - 1].counts, c1 = table[i].counts;
            return (uint16_t)(f0 + div_round((f1 - f0) * ((int32_t)counts - c0), c1 - c0));
        }
    }
    return table[n - 1].force_dn;
}

uint8_t fes_heel_fault(uint16_t counts)
{
    return counts <= fes_fsr_short_max_counts || counts >= fes_fsr_open_min_counts;
}

uint16_t fes_vcc_mv(uint16_t counts, uint16_t bandgap_mv)
{
    uint32_t mv;

    if (counts == 0u)
        return 0xFFFFu;
    mv = ((uint32_t)bandgap_mv * 1024u + counts / 2u) / counts;
    return mv > 0xFFFFu ? 0xFFFFu : (uint16_t)mv;
}

uint8_t fes_low_battery(uint8_t was_low, uint16_t vcc_mv, uint16_t low_mv)
{
    if (low_mv == 0u)
        return 0;
    if (vcc_mv < low_mv)
        return 1;
    return was_low && (uint32_t)vcc_mv < (uint32_t)low_mv + FES_VCC_HYSTERESIS_MV;
}

static int16_t scale_q16(int32_t raw, int32_t q16)
{
    /* |raw| <= 32768 and q16 < 65536 keep the product inside int32; >> on a negative
     * int32 is arithmetic in gcc and avr-gcc (documented implementation behaviour) */
    return (int16_t)((raw * q16 + 32768L) >> 16);
}

uint8_t fes_imu_to_body(const int16_t raw[6], const int8_t rot[9], int16_t acc[3],
                        int16_t gyro[3])
{
    uint8_t saturated = 0;
    uint8_t b, s;

    for (s = 0; s < 6; s++)
        if (raw[s] == INT16_MAX || raw[s] == INT16_MIN)
            saturated = 1;
    for (b = 0; b < 3; b++) {
        int32_t a = 0, g = 0;
        for (s = 0; s < 3; s++) {
            a += (int32_t)rot[3 * b + s] * raw[s];
            g += (int32_t)rot[3 * b + s] * raw[3 + s];
        }
        /* only -(-32768) leaves the int16 range; it is a saturated reading anyway */
        if (a > INT16_MAX)
            a = INT16_MAX;
        if (g > INT16_MAX)
            g = INT16_MAX;
        acc[b] = scale_q16(a, FES_ACC_Q16);
        gyro[b] = scale_q16(g, FES_GYRO_Q16);
    }
    return saturated;
}

void fes_unit_frame(const fes_unit_sample_t *sample, const int8_t rot[9], uint16_t seq,
                    uint32_t timestamp_us, fes_frame_t *out)
{
    uint8_t i;

    out->flags = 0;
    out->seq = seq;
    out->timestamp_us = timestamp_us;
    out->heel_force = 0;
    out->heel_raw = 0;
    out->tilt = 0;
    for (i = 0; i < 3; i++)
        out->acc[i] = out->gyro[i] = 0;
    if (sample->heel_fitted) {
        out->flags |= FES_FLAG_HEEL_PRESENT;
        out->heel_raw = sample->heel_counts;
        if (fes_heel_fault(sample->heel_counts))
            out->flags |= FES_FLAG_HEEL_FAULT;
        else
            out->heel_force = fes_fsr_force_dn(sample->heel_counts, fes_fsr_table,
                                               fes_fsr_table_len);
    }
    if (sample->imu_ok) {
        out->flags |= FES_FLAG_IMU_PRESENT;
        if (fes_imu_to_body(sample->imu_raw, rot, out->acc, out->gyro))
            out->flags |= FES_FLAG_IMU_SATURATED;
    }
    if (sample->low_battery)
        out->flags |= FES_FLAG_LOW_BATTERY;
}
