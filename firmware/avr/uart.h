/* uart: USART0 transmit-only, one frame at a time from an interrupt (ATmega328P). */
#ifndef UART_H
#define UART_H

#include <stdint.h>

#include "fes_frame.h"

/* 8N1 at FES_BAUD (exact: unit_config.h refuses any other), transmitter only. */
void uart_init(void);

/*
 * Queue one frame; the UDRE interrupt sends it while the next sample is taken. Returns 0
 * (frame dropped, the host sees the sequence gap) when the previous frame is still going.
 */
uint8_t uart_send(const uint8_t frame[FES_FRAME_LEN]);

#endif /* UART_H */
