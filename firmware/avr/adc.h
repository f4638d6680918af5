/*
 * adc: the heel FSR on ADC0 (A0) and, when asked, the supply (the 1.1 V bandgap against
 * AVcc), converted from the ADC interrupt while the main loop reads the IMU.
 */
#ifndef ADC_H
#define ADC_H

#include <stdint.h>

/* AVcc reference (the FSR divider is fed from the same 5 V: ratiometric), 125 kHz clock. */
void adc_init(void);

/* Start A0, then (with_vcc) three bandgap conversions of which the last is kept. */
void adc_start(uint8_t with_vcc);

/*
 * Wait (bounded, < 1 ms) for the sequence; heel and bandgap counts out. Returns 0 when it
 * did not finish: heel counts are then 0, a rail, so the frame carries the heel fault.
 */
uint8_t adc_finish(uint16_t *heel_counts, uint16_t *bandgap_counts);

#endif /* ADC_H */
