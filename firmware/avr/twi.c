/* twi: see twi.h. */
#include "twi.h"

#include <avr/io.h>
#include <util/delay.h>
#include <util/twi.h>

#include "unit_config.h"

/* polls of TWINT before giving up: one byte at 400 kHz is ~23 us; this is > 1 ms */
#define TWI_POLLS 4000u

#define SDA_BIT PC4
#define SCL_BIT PC5

static uint8_t twi_wait(void)
{
    uint16_t n = TWI_POLLS;

    while (!(TWCR & _BV(TWINT)))
        if (--n == 0u)
            return 0;
    return 1;
}

static uint8_t twi_start(void)
{
    TWCR = _BV(TWINT) | _BV(TWSTA) | _BV(TWEN);
    return twi_wait() && (TW_STATUS == TW_START || TW_STATUS == TW_REP_START);
}

static void twi_stop(void)
{
    uint16_t n = TWI_POLLS;

    TWCR = _BV(TWINT) | _BV(TWSTO) | _BV(TWEN);
    while ((TWCR & _BV(TWSTO)) && --n)
        ;
}

static uint8_t twi_put(uint8_t byte, uint8_t expected_status)
{
    TWDR = byte;
    TWCR = _BV(TWINT) | _BV(TWEN);
    return twi_wait() && TW_STATUS == expected_status;
}

void twi_init(void)
{
    PORTC &= (uint8_t)~(_BV(SDA_BIT) | _BV(SCL_BIT)); /* no internal pull-up to 5 V */
    TWSR = 0;                                           /* prescaler 1 */
    TWBR = (uint8_t)FES_TWBR;
    TWCR = _BV(TWEN);
}

uint8_t twi_write_reg(uint8_t addr, uint8_t reg, uint8_t value)
{
    uint8_t ok = twi_start() && twi_put((uint8_t)(addr << 1 | TW_WRITE), TW_MT_SLA_ACK) &&
                 twi_put(reg, TW_MT_DATA_ACK) && twi_put(value, TW_MT_DATA_ACK);

    twi_stop();
    return ok;
}

uint8_t twi_read_regs(uint8_t addr, uint8_t reg, uint8_t *buf, uint8_t n)
{
    uint8_t i, ok;

    ok = twi_start() && twi_put((uint8_t)(addr << 1 | TW_WRITE), TW_MT_SLA_ACK) &&
         twi_put(reg, TW_MT_DATA_ACK) && twi_start() &&
         twi_put((uint8_t)(addr << 1 | TW_READ), TW_MR_SLA_ACK);
    for (i = 0; ok && i < n; i++) {
        uint8_t last = (uint8_t)(i + 1u == n);
        /* ACK every byte but the last, which gets a NACK: the slave then lets go of SDA */
        TWCR = (uint8_t)(_BV(TWINT) | _BV(TWEN) | (last ? 0 : _BV(TWEA)));
        ok = twi_wait() && TW_STATUS == (last ? TW_MR_DATA_NACK : TW_MR_DATA_ACK);
        if (ok)
            buf[i] = TWDR;
    }
    twi_stop();
    return ok;
}

void twi_recover(void)
{
    uint8_t i;

    TWCR = 0; /* the pins are plain I/O again; open drain: output low or input (pulled up) */
    DDRC &= (uint8_t)~(_BV(SDA_BIT) | _BV(SCL_BIT));
    PORTC &= (uint8_t)~(_BV(SDA_BIT) | _BV(SCL_BIT));
    for (i = 0; i < 9u && !(PINC & _BV(SDA_BIT)); i++) {
        DDRC |= _BV(SCL_BIT);
        _delay_us(5);
        DDRC &= (uint8_t)~_BV(SCL_BIT);
        _delay_us(5);
    }
    /* STOP: SDA rises while SCL is high */
    DDRC |= _BV(SDA_BIT);
    _delay_us(5);
    DDRC &= (uint8_t)~_BV(SDA_BIT);
    _delay_us(5);
    twi_init();
}
