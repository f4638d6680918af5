/* adc: see adc.h. */
#include "adc.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/delay.h>

#define MUX_A0 0x00u
#define MUX_BANDGAP 0x0Eu /* MUX3..0 = 1110: internal 1.1 V */
/* the bandgap's output settles slowly on the sample-and-hold: the first readings are low */
#define BANDGAP_CONVERSIONS 3u

static volatile uint8_t step;      /* conversions still to come; 0: the sequence is done */
static volatile uint8_t with_bandgap;
static volatile uint16_t heel;
static volatile uint16_t bandgap;

void adc_init(void)
{
    ADMUX = _BV(REFS0) | MUX_A0;
    DIDR0 = _BV(ADC0D); /* no digital input buffer on the analog pin */
    /* 16 MHz / 128 = 125 kHz, within the 50..200 kHz of full 10-bit resolution */
    ADCSRA = _BV(ADEN) | _BV(ADIE) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
}

void adc_start(uint8_t with_vcc)
{
    with_bandgap = with_vcc;
    step = (uint8_t)(1u + (with_vcc ? BANDGAP_CONVERSIONS : 0u));
    ADMUX = _BV(REFS0) | MUX_A0;
    ADCSRA |= _BV(ADSC);
}

ISR(ADC_vect)
{
    uint16_t counts = ADC;

    if (step == 1u + (with_bandgap ? BANDGAP_CONVERSIONS : 0u)) {
        heel = counts;
        if (with_bandgap)
            ADMUX = _BV(REFS0) | MUX_BANDGAP;
    } else {
        bandgap = counts;
    }
    if (--step == 0u)
        ADMUX = _BV(REFS0) | MUX_A0;
    else
        ADCSRA |= _BV(ADSC);
}

uint8_t adc_finish(uint16_t *heel_counts, uint16_t *bandgap_counts)
{
    uint8_t waited = 0;

    /* 4 conversions of 13 ADC clocks at 125 kHz: 416 us; give up at 1 ms */
    while (step != 0u && waited < 100u) {
        _delay_us(10);
        waited++;
    }
    if (step != 0u) {
        ADCSRA = _BV(ADIF); /* off (aborts a conversion), pending interrupt cleared */
        step = 0;
        adc_init();
        *heel_counts = 0;
        *bandgap_counts = 0;
        return 0;
    }
    *heel_counts = heel;
    *bandgap_counts = bandgap;
    return 1;
}
