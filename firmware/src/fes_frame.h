/*
 * fes_frame: the sensor unit's binary frame, version 1 (docs/protocol.md).
 *
 * Portable C99 with no dependency beyond <stdint.h>/<stddef.h>: the same source is
 * compiled into the AVR firmware and, for the conformance test
 * (tests/test_firmware_frame.py), into a host shared library whose output is
 * checked byte for byte against drivers/sensor_protocol.encode_frame.
 *
 * Frame (33 bytes, little-endian):
 *   0 sync A5 5A | 2 length (28) | 3 version (1) | 4 flags | 5 seq u16 |
 *   7 timestamp_us u32 | 11 heel_force u16 (0.1 N) | 13 heel_raw u16 (ADC counts) |
 *   15 acc x,y,z i16 (0.01 m/s^2) | 21 gyro x,y,z i16 (0.1 deg/s) |
 *   27 tilt i16 (0.01 deg) | 29 reserved u16 (0) | 31 crc u16
 * crc = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)
 * over bytes 2..30.
 */
#ifndef FES_FRAME_H
#define FES_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FES_FRAME_SYNC0 0xA5u
#define FES_FRAME_SYNC1 0x5Au
#define FES_FRAME_PAYLOAD_LEN 28u
#define FES_FRAME_LEN 33u            /* sync 2 + length 1 + payload 28 + crc 2 */
#define FES_FRAME_VERSION 1u
#define FES_CRC16_INIT 0xFFFFu

/* flags byte */
#define FES_FLAG_HEEL_PRESENT 0x01u
#define FES_FLAG_IMU_PRESENT 0x02u
#define FES_FLAG_TILT_PRESENT 0x04u
#define FES_FLAG_IMU_SATURATED 0x08u
#define FES_FLAG_HEEL_FAULT 0x10u
#define FES_FLAG_LOW_BATTERY 0x20u

/* One sample in wire units (raw counts; see the scaling above). */
typedef struct fes_frame {
    uint8_t flags;
    uint16_t seq;            /* +1 per frame, wraps at 65536 */
    uint32_t timestamp_us;   /* device clock, microseconds, wraps at 2^32 */
    uint16_t heel_force;     /* 0.1 N per count */
    uint16_t heel_raw;       /* ADC counts, for calibration */
    int16_t acc[3];          /* body frame x, y, z; 0.01 m/s^2 per count, gravity included */
    int16_t gyro[3];         /* body frame x, y, z; 0.1 deg/s per count */
    int16_t tilt;            /* 0.01 deg per count; 0 unless FES_FLAG_TILT_PRESENT */
} fes_frame_t;

/* CRC-16/CCITT-FALSE of len bytes, continuing from crc (FES_CRC16_INIT to start). */
uint16_t fes_crc16_ccitt(const uint8_t *data, size_t len, uint16_t crc);

/*
 * Write the frame's FES_FRAME_LEN wire bytes to out. The flags byte is sent as given
 * (the caller sets only defined bits); version and reserved are fixed. Returns
 * FES_FRAME_LEN. Never fails; reads nothing but *frame and writes nothing but out.
 */
size_t fes_frame_encode(const fes_frame_t *frame, uint8_t out[FES_FRAME_LEN]);

#ifdef __cplusplus
}
#endif

#endif /* FES_FRAME_H */
