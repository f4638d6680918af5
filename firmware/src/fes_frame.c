/* fes_frame: encoder for the version-1 sensor frame. See fes_frame.h and docs/protocol.md. */
#include "fes_frame.h"

uint16_t fes_crc16_ccitt(const uint8_t *data, size_t len, uint16_t crc)
{
    /* Byte-wise CRC-CCITT (poly 0x1021, MSB first) without a table: the 256-entry
     * table would cost 512 bytes of the AVR's flash and the bit loop 8x the time. */
    while (len--) {
        uint8_t x = (uint8_t)((crc >> 8) ^ *data++);
        x ^= (uint8_t)(x >> 4);
        crc = (uint16_t)((crc << 8) ^ ((uint16_t)x << 12) ^ ((uint16_t)x << 5) ^ (uint16_t)x);
    }
    return crc;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put_i16(uint8_t *p, int16_t v)
{
    /* two's complement bit pattern, defined for every value by the cast to uint16_t */
    return put_u16(p, (uint16_t)v);
}

size_t fes_frame_encode(const fes_frame_t *frame, uint8_t out[FES_FRAME_LEN])
{
    uint8_t *p = out;
    uint8_t i;
    uint16_t crc;

    *p++ = FES_FRAME_SYNC0;
    *p++ = FES_FRAME_SYNC1;
    *p++ = FES_FRAME_PAYLOAD_LEN;
    *p++ = FES_FRAME_VERSION;
    *p++ = frame->flags;
    p = put_u16(p, frame->seq);
    p = put_u16(p, (uint16_t)(frame->timestamp_us & 0xFFFFu));
    p = put_u16(p, (uint16_t)(frame->timestamp_us >> 16));
    p = put_u16(p, frame->heel_force);
    p = put_u16(p, frame->heel_raw);
    for (i = 0; i < 3; i++)
        p = put_i16(p, frame->acc[i]);
    for (i = 0; i < 3; i++)
        p = put_i16(p, frame->gyro[i]);
    p = put_i16(p, frame->tilt);
    p = put_u16(p, 0u); /* reserved */
    crc = fes_crc16_ccitt(out + 2, 1u + FES_FRAME_PAYLOAD_LEN, FES_CRC16_INIT);
    put_u16(p, crc);
    return FES_FRAME_LEN;
}
