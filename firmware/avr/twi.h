/*
 * twi: polled I2C master on the ATmega328P TWI (SDA = PC4/A4, SCL = PC5/A5), every wait
 * bounded (a missing or stuck device is an error, never a hang), with bus recovery.
 */
#ifndef TWI_H
#define TWI_H

#include <stdint.h>

/* Master at FES_TWI_HZ; the pull-ups are the breakout's (the AVR's internal ones stay off). */
void twi_init(void);

/* Write one register. Returns 1 on ACKs throughout, 0 on any bus error or timeout. */
uint8_t twi_write_reg(uint8_t addr, uint8_t reg, uint8_t value);

/* Read n >= 1 consecutive registers from reg into buf. Returns 1, or 0 on error/timeout. */
uint8_t twi_read_regs(uint8_t addr, uint8_t reg, uint8_t *buf, uint8_t n);

/*
 * After an error: release the bus (a device stuck mid-byte holds SDA low until it has
 * clocked its byte out, so up to 9 SCL pulses, then a STOP) and restart the TWI.
 */
void twi_recover(void);

#endif /* TWI_H */
