/* uart: see uart.h. */
#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#include "unit_config.h"

static volatile uint8_t tx_buf[FES_FRAME_LEN];
static volatile uint8_t tx_pos = FES_FRAME_LEN;

void uart_init(void)
{
    UBRR0 = (uint16_t)FES_UBRR_VALUE;
    UCSR0A = FES_U2X ? _BV(U2X0) : 0;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8 data bits, no parity, 1 stop bit */
    UCSR0B = _BV(TXEN0);
}

uint8_t uart_send(const uint8_t frame[FES_FRAME_LEN])
{
    uint8_t i;

    if (tx_pos < FES_FRAME_LEN)
        return 0;
    for (i = 0; i < FES_FRAME_LEN; i++)
        tx_buf[i] = frame[i];
    tx_pos = 0;
    UCSR0B |= _BV(UDRIE0);
    return 1;
}

ISR(USART_UDRE_vect)
{
    UDR0 = tx_buf[tx_pos];
    if (++tx_pos >= FES_FRAME_LEN)
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
}
