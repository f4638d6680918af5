/*
 * unit_sim: runs the sensor unit's AVR firmware (build/fes_sensor.elf) in simavr, an
 * instruction-level ATmega328P simulator, with a simulated heel divider on ADC0, a
 * simulated supply, and a register-level MPU-6050 on the TWI bus; writes every byte the
 * firmware sends on USART0 to the file OUT. tests/test_firmware_sim.py parses them.
 *
 *   unit_sim ELF OUT MS HEEL_MV VCC_MV [IMU_OFF_MS IMU_BACK_MS]
 *
 * The simulated MPU-6050 answers at 0x68 (WHO_AM_I 0x68, registers read and written with
 * auto-increment, a PWR_MGMT_1 reset restores the power-on values) and holds fixed data:
 * acc (100, -200, 2048), temperature 0, gyro (164, -328, 0) LSB. Between IMU_OFF_MS and
 * IMU_BACK_MS of simulated time it does not acknowledge (unplugged), and it comes back with
 * its power-on configuration (+-2 g, +-250 deg/s, asleep), as after a brown-out.
 * Build: cc -I/usr/include/simavr unit_sim.c -lsimavr -lelf (tests/test_firmware_sim.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avr_adc.h"
#include "avr_twi.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_io.h"
#include "sim_irq.h"

#define MPU_ADDR 0x68u
#define TWSR_ADDR 0xB9u /* ATmega328P data-space addresses of TWSR and TWCR */
#define TWCR_ADDR 0xBCu
#define TWINT_BIT 0x80u
#define TW_MT_DATA_ACK 0x28u
#define TW_MT_SLA_ACK 0x18u

static avr_irq_t *mpu_irq;
static uint8_t regs[128];
static uint8_t selected, present = 1;
static int byte_index;
static uint8_t reg;
static uint8_t sla_w_pending; /* an SLA+W was just acknowledged: see status_hook */
static const int16_t mpu_data[7] = {100, -200, 2048, 0, 164, -328, 0};

static void mpu_power_on(void)
{
    int i;

    memset(regs, 0, sizeof regs);
    regs[0x6B] = 0x40; /* asleep */
    regs[0x75] = MPU_ADDR;
    for (i = 0; i < 7; i++) {
        regs[0x3B + 2 * i] = (uint8_t)((uint16_t)mpu_data[i] >> 8);
        regs[0x3C + 2 * i] = (uint8_t)((uint16_t)mpu_data[i] & 0xFF);
    }
}

static void mpu_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    avr_twi_msg_irq_t v;

    (void)irq;
    (void)param;
    v.u.v = value;
    if (v.u.twi.msg & TWI_COND_STOP)
        selected = 0;
    if (v.u.twi.msg & TWI_COND_START) {
        selected = 0;
        byte_index = 0;
        if (present && (v.u.twi.addr >> 1) == MPU_ADDR) {
            selected = v.u.twi.addr;
            sla_w_pending = !(v.u.twi.addr & 1);
            avr_raise_irq(mpu_irq + TWI_IRQ_INPUT, avr_twi_irq_msg(TWI_COND_ACK, selected, 1));
        }
    }
    if (!selected)
        return;
    if (v.u.twi.msg & TWI_COND_WRITE) {
        avr_raise_irq(mpu_irq + TWI_IRQ_INPUT, avr_twi_irq_msg(TWI_COND_ACK, selected, 1));
        if (byte_index == 0) {
            reg = v.u.twi.data & 0x7F;
        } else if (reg == 0x6B && (v.u.twi.data & 0x80)) {
            mpu_power_on();
        } else if (reg < 0x3B || reg > 0x48) { /* data registers are read-only */
            regs[reg] = v.u.twi.data;
            reg = (uint8_t)((reg + 1) & 0x7F);
        }
        byte_index++;
    }
    if (v.u.twi.msg & TWI_COND_READ) {
        avr_raise_irq(mpu_irq + TWI_IRQ_INPUT, avr_twi_irq_msg(TWI_COND_READ, selected, regs[reg]));
        reg = (uint8_t)((reg + 1) & 0x7F);
    }
}

/*
 * simavr 1.6 (Debian) reports an acknowledged SLA+W as 0x28 (data ACK) instead of 0x18 (SLA+W
 * ACK), which the real TWI reports and the firmware checks; correct the register as it is set.
 */
static void status_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    avr_t *avr = param;

    (void)irq;
    if (sla_w_pending && (value & 0xF8u) == TW_MT_DATA_ACK)
        avr->data[TWSR_ADDR] = (uint8_t)((avr->data[TWSR_ADDR] & 0x07u) | TW_MT_SLA_ACK);
    sla_w_pending = 0;
}

/*
 * simavr 1.6 also leaves TWINT set when the program writes a one to it (the real TWI clears
 * it: that is how a polled master starts the next step); clear it after simavr's own handler.
 */
static void twcr_write(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr;
    (void)param;
    if (v & TWINT_BIT)
        avr->data[TWCR_ADDR] &= (uint8_t)~TWINT_BIT;
}

static void uart_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    fputc((int)(value & 0xFF), (FILE *)param);
}

int main(int argc, char **argv)
{
    static const char *names[] = {"mpu6050.in", "mpu6050.out"};
    elf_firmware_t fw;
    avr_t *avr;
    uint32_t flags = 0;
    unsigned long ms, heel_mv, vcc_mv, off_ms = 0, back_ms = 0;
    avr_cycle_count_t end;
    int state = cpu_Running;
    FILE *out;

    if (argc != 6 && argc != 8) {
        fprintf(stderr, "usage: unit_sim ELF OUT MS HEEL_MV VCC_MV [IMU_OFF_MS IMU_BACK_MS]\n");
        return 2;
    }
    out = fopen(argv[2], "wb");
    if (!out) {
        fprintf(stderr, "unit_sim: cannot write %s\n", argv[2]);
        return 2;
    }
    ms = strtoul(argv[3], NULL, 10);
    heel_mv = strtoul(argv[4], NULL, 10);
    vcc_mv = strtoul(argv[5], NULL, 10);
    if (argc == 8) {
        off_ms = strtoul(argv[6], NULL, 10);
        back_ms = strtoul(argv[7], NULL, 10);
    }
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[1], &fw) != 0) {
        fprintf(stderr, "unit_sim: cannot read %s\n", argv[1]);
        return 2;
    }
    avr = avr_make_mcu_by_name("atmega328p");
    if (!avr) {
        fprintf(stderr, "unit_sim: simavr has no atmega328p\n");
        return 2;
    }
    avr_init(avr);
    avr_load_firmware(avr, &fw);
    avr->frequency = 16000000;
    avr->vcc = avr->avcc = avr->aref = (uint32_t)vcc_mv;
    avr->log = 0;

    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)AVR_UART_FLAG_STDIO;
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), uart_hook,
                            out);

    mpu_power_on();
    mpu_irq = avr_alloc_irq(&avr->irq_pool, 0, 2, names);
    avr_irq_register_notify(mpu_irq + TWI_IRQ_OUTPUT, mpu_hook, NULL);
    avr_connect_irq(mpu_irq + TWI_IRQ_INPUT, avr_io_getirq(avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_INPUT));
    avr_connect_irq(avr_io_getirq(avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_OUTPUT), mpu_irq + TWI_IRQ_OUTPUT);

    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_TWI_GETIRQ(0), TWI_IRQ_STATUS), status_hook, avr);
    avr_register_io_write(avr, TWCR_ADDR, twcr_write, NULL);

    avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0), (uint32_t)heel_mv);

    end = (avr_cycle_count_t)ms * 16000u;
    while (avr->cycle < end && state != cpu_Done && state != cpu_Crashed) {
        avr_cycle_count_t now_ms = avr->cycle / 16000u;

        if (argc == 8) {
            if (present && now_ms >= off_ms && now_ms < back_ms)
                present = 0;
            else if (!present && now_ms >= back_ms) {
                mpu_power_on(); /* back after a brown-out: power-on configuration */
                present = 1;
            }
        }
        state = avr_run(avr);
    }
    fclose(out);
    fprintf(stderr, "unit_sim: %llu cycles, state %d\n", (unsigned long long)avr->cycle, state);
    return state == cpu_Crashed ? 1 : 0;
}
