"""The sensor unit's portable C beyond the frame: clock plan, MPU-6050 handling, supply check.

firmware/src/fes_plan.c (UART divisor, sample timer, link load), mpu6050.c (configuration,
read-back check, burst layout) and sensor_unit.c's supply check, compiled for the host like
tests/test_firmware_frame.py does, against Python references written from the ATmega328P
and MPU-6050 datasheets' formulas. firmware/avr/ uses these functions and macros only.
"""
from __future__ import annotations

import ctypes
import re
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from tests import firmware_host as fw

F_CPU = 16_000_000
EXACT_RATES_HZ = [100, 125, 160, 200, 250, 320, 400, 500, 625, 800, 1000]
FIRMWARE = fw.FIRMWARE_SRC.parent


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return fw.build_library(tmp_path_factory.mktemp("fesfw"))


def uart_plan(lib, f_cpu: int, baud: int):
    plan = fw.UartPlan()
    exact = lib.fes_uart_plan(f_cpu, baud, ctypes.byref(plan))
    return bool(exact), (plan.ubrr, plan.u2x, plan.actual_baud, plan.error_ppm)


def python_uart_plan(f_cpu: int, baud: int):
    """ATmega328P datasheet, USART0: baud = f_cpu / (K (UBRR + 1)), K 16 or 8 (U2X)."""
    best = None
    for u2x, k in ((0, 16), (1, 8)):
        if baud == 0 or f_cpu < k * baud:
            continue
        ubrr = (f_cpu + k * baud // 2) // (k * baud) - 1
        if ubrr > 4095:
            continue
        actual = f_cpu // (k * (ubrr + 1))
        diff = (actual - baud) * 1_000_000
        ppm = (abs(diff) + baud // 2) // baud * (1 if diff >= 0 else -1)
        if best is None or abs(ppm) < abs(best[3]):
            best = (ubrr, u2x, actual, ppm, f_cpu % (k * baud) == 0)
    if best is None:
        return False, (0, 0, 0, 0)
    return best[4], best[:4]


@pytest.mark.parametrize("baud, ubrr, u2x", [(1_000_000, 0, 0), (500_000, 1, 0), (250_000, 3, 0),
                                             (2_000_000, 0, 1)])
def test_our_bauds_are_made_exactly_from_16_mhz(lib, baud, ubrr, u2x):
    assert uart_plan(lib, F_CPU, baud) == (True, (ubrr, u2x, baud, 0))


@pytest.mark.parametrize("baud, actual, ppm", [(921_600, 1_000_000, 85_069), (115_200, 117_647, 21_241),
                                               (460_800, 500_000, 85_069)])
def test_common_pc_bauds_are_not_exact_and_the_error_is_reported(lib, baud, actual, ppm):
    exact, (_, _, got_actual, got_ppm) = uart_plan(lib, F_CPU, baud)
    assert not exact and (got_actual, got_ppm) == (actual, ppm)


@settings(max_examples=400, deadline=None)
@given(f_cpu=st.sampled_from([1_000_000, 8_000_000, 12_000_000, 16_000_000, 18_432_000, 20_000_000]),
       baud=st.one_of(st.integers(1, 3_000_000), st.sampled_from([9600, 57600, 115200, 230400, 250000, 500000,
                                                                  921600, 1_000_000, 2_000_000])))
def test_uart_plan_is_the_datasheet_formula(lib, f_cpu, baud):
    assert uart_plan(lib, f_cpu, baud) == python_uart_plan(f_cpu, baud)


def test_sample_clock_accepts_exactly_the_whole_microsecond_rates(lib):
    accepted = {}
    for rate in range(0, 1200):
        plan = fw.SamplePlan()
        if lib.fes_sample_plan(F_CPU, rate, ctypes.byref(plan)):
            accepted[rate] = (plan.ocr, plan.period_us)
        else:
            assert (plan.ocr, plan.period_us) == (0, 0)
    assert sorted(accepted) == EXACT_RATES_HZ
    for rate, (ocr, period_us) in accepted.items():
        assert (ocr + 1) * 8 == F_CPU // rate and period_us * rate == 1_000_000  # 0.5 us timer ticks
    # the list the build's refusal prints is this list
    config = (FIRMWARE / "avr" / "unit_config.h").read_text()
    assert " ".join(map(str, EXACT_RATES_HZ)) in config


@pytest.mark.parametrize("baud, rate, fits", [(1_000_000, 1000, True), (500_000, 1000, True),
                                              (250_000, 1000, False), (250_000, 500, True),
                                              (115_200, 320, False), (115_200, 100, True)])
def test_link_load_at_most_90_percent(lib, baud, rate, fits):
    assert bool(lib.fes_link_fits(baud, rate)) == fits == (330 * rate <= 0.9 * baud)


# ---- MPU-6050 ---------------------------------------------------------------------------------------

def init_writes(lib, rate: int) -> list[tuple[int, int]]:
    out = (fw.RegWrite * 5)()
    n = lib.fes_mpu6050_init_writes(rate, out)
    return [(w.reg, w.value) for w in out[:n]]


@pytest.mark.parametrize("rate, dlpf", [(100, 3), (125, 3), (160, 3), (200, 2), (320, 2), (400, 1), (1000, 1)])
def test_configuration_matches_the_frame_units_and_the_rate(lib, rate, dlpf):
    """+-16 g and +-2000 deg/s (sensor_unit.h's scaling), a DLPF under half the sample rate."""
    bandwidth_hz = {1: 188, 2: 98, 3: 44}[dlpf]
    assert bandwidth_hz <= rate / 2
    assert init_writes(lib, rate) == [(0x6B, 0x01), (0x19, 0x00), (0x1A, dlpf), (0x1B, 0x18), (0x1C, 0x18)]
    header = (fw.FIRMWARE_SRC / "sensor_unit.h").read_text()
    assert "+-16 g (2048 LSB/g) and +-2000 deg/s (16.4 LSB/(deg/s))" in header


def config_ok(lib, cfg, pwr, rate) -> bool:
    return bool(lib.fes_mpu6050_config_ok((ctypes.c_uint8 * 4)(*cfg), pwr, rate))


@settings(max_examples=200, deadline=None)
@given(rate=st.sampled_from(EXACT_RATES_HZ), byte=st.integers(0, 4), bit=st.integers(0, 7))
def test_read_back_check_accepts_only_what_was_written(lib, rate, byte, bit):
    regs = dict(init_writes(lib, rate))
    cfg, pwr = [regs[0x19], regs[0x1A], regs[0x1B], regs[0x1C]], regs[0x6B]
    assert config_ok(lib, cfg, pwr, rate)
    if byte < 4:
        cfg[byte] ^= 1 << bit
    else:
        pwr ^= 1 << bit
    assert not config_ok(lib, cfg, pwr, rate)


def test_a_chip_reset_by_a_brown_out_is_not_trusted(lib):
    # power-on values (register map rev 4.2): everything 0, PWR_MGMT_1 0x40 (asleep)
    assert not config_ok(lib, [0, 0, 0, 0], 0x40, 100)


@settings(max_examples=300, deadline=None)
@given(burst=st.binary(min_size=14, max_size=14))
def test_burst_layout_big_endian_temperature_skipped(lib, burst):
    raw = (ctypes.c_int16 * 6)()
    lib.fes_mpu6050_raw((ctypes.c_uint8 * 14)(*burst), raw)
    ax, ay, az, _temp, gx, gy, gz = struct.unpack(">7h", burst)
    assert tuple(raw) == (ax, ay, az, gx, gy, gz)


# ---- supply -----------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(counts=st.integers(0, 1023), bandgap_mv=st.integers(1000, 1200))
def test_vcc_from_the_bandgap_reading(lib, counts, bandgap_mv):
    want = 0xFFFF if counts == 0 else min(0xFFFF, (bandgap_mv * 1024 + counts // 2) // counts)
    assert lib.fes_vcc_mv(counts, bandgap_mv) == want
    if counts == 225:  # 1.1 V read as 225 counts: AVcc 5.0 V
        assert abs(lib.fes_vcc_mv(counts, 1100) - 5006) <= 1


@settings(max_examples=300, deadline=None)
@given(levels=st.lists(st.integers(3000, 5500), min_size=1, max_size=40), low_mv=st.integers(0, 5000))
def test_low_battery_has_hysteresis_and_can_be_off(lib, levels, low_mv):
    was = 0
    for mv in levels:
        now = lib.fes_low_battery(was, mv, low_mv)
        if low_mv == 0:
            assert now == 0
        elif mv < low_mv:
            assert now == 1
        elif mv >= low_mv + 100:
            assert now == 0
        else:
            assert now == was  # inside the band: the state holds
        was = now


def test_c_flag_bits_are_the_protocols():
    header = (fw.FIRMWARE_SRC / "fes_frame.h").read_text()
    bits = {m[0]: int(m[1], 16) for m in re.findall(r"#define FES_FLAG_(\w+) (0x[0-9A-F]+)u", header)}
    assert bits == {"HEEL_PRESENT": sp.FLAG_HEEL_PRESENT, "IMU_PRESENT": sp.FLAG_IMU_PRESENT,
                    "TILT_PRESENT": sp.FLAG_TILT_PRESENT, "IMU_SATURATED": sp.FLAG_IMU_SATURATED,
                    "HEEL_FAULT": sp.FLAG_HEEL_FAULT, "LOW_BATTERY": sp.FLAG_LOW_BATTERY}


# ---- print_plan: what `make -C firmware` prints about the wire -------------------------------------

@pytest.fixture(scope="module")
def print_plan(tmp_path_factory):
    exe = tmp_path_factory.mktemp("plan") / "print_plan"
    cmd = [fw.host_compiler(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(fw.FIRMWARE_SRC),
           "-o", str(exe), str(FIRMWARE / "tools" / "print_plan.c"), str(fw.FIRMWARE_SRC / "fes_plan.c")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return exe


def test_print_plan_shows_zero_error_for_the_default_build(print_plan):
    done = subprocess.run([str(print_plan), str(F_CPU), "1000000", "100"], capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == 0
    assert "uart: 1000000 Bd = 16000000 Hz / (16 x (UBRR0 0 + 1)), U2X0=0, error +0.000 % (0 ppm)" in done.stdout
    assert "sample clock: 100 Hz = Timer1 CTC, prescaler 8, OCR1A 19999, period 10000 us exactly" in done.stdout


@pytest.mark.parametrize("baud, rate, says", [("921600", "100", "921600 Bd is NOT exact"),
                                              ("1000000", "300", "300 Hz has no exact Timer1 period"),
                                              ("250000", "1000", "132.0 % of 250000 Bd")])
def test_print_plan_refuses(print_plan, baud, rate, says):
    done = subprocess.run([str(print_plan), str(F_CPU), baud, rate], capture_output=True, text=True, timeout=10)
    assert done.returncode == 1 and says in done.stdout
