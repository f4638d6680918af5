"""The AVR firmware itself, run instruction by instruction in simavr (an ATmega328P simulator).

firmware/sim/unit_sim.c loads build/fes_sensor.elf into simavr with a simulated heel divider
on ADC0, a simulated supply and a register-level MPU-6050 on the TWI bus, and records every
byte the UART sends. The frames must parse without one error, count seq and timestamp_us
exactly from the sample clock, carry the heel counts and force, the IMU's rotated and scaled
data once it is configured and settled, and the flags: heel fault on a rail, low battery on
a low supply, IMU absent while the chip is unplugged and present again only after the
firmware has configured it anew (it comes back reset, as after a brown-out).

The toolchain and simavr's library come from .ci/install-avr (skip only when it cannot
install here, as in tests/test_firmware_build.py).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fescontrol.drivers import sensor_protocol as sp
from tests import firmware_host as fw
from tests.test_firmware_build import make, toolchain  # noqa: F401  (fixture)
from tests.test_firmware_frame import python_fsr, python_imu_to_body

HARNESS = fw.FIRMWARE_SRC.parent / "sim" / "unit_sim.c"
SIMAVR_INCLUDE = Path("/usr/include/simavr")
MPU_RAW = (100, -200, 2048, 164, -328, 0)  # what the simulated chip holds (unit_sim.c)
BOOT_MS = 250  # power-on wait 100 ms, IMU reset 100 ms, configuration


@pytest.fixture(scope="module")
def harness(toolchain, tmp_path_factory):  # noqa: F811
    if not (SIMAVR_INCLUDE / "sim_avr.h").is_file():
        pytest.fail("simavr's headers are missing although .ci/install-avr ran (libsimavr-dev)")
    exe = tmp_path_factory.mktemp("sim") / "unit_sim"
    cmd = [fw.host_compiler(), "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(SIMAVR_INCLUDE), "-o", str(exe),
           str(HARNESS), "-lsimavr"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return exe


@pytest.fixture(scope="module")
def firmware(toolchain, tmp_path_factory):  # noqa: F811
    """ELF files by option set, built once per module."""
    built = {}

    def build(*options: str) -> Path:
        if options not in built:
            out = tmp_path_factory.mktemp("fw")
            done = make(out, *options)
            assert done.returncode == 0, done.stdout + done.stderr
            built[options] = out / "fes_sensor.elf"
        return built[options]
    return build


def simulate(harness, elf: Path, tmp_path: Path, ms: int, heel_mv: int, vcc_mv: int = 5000,
             imu_off: tuple[int, int] | None = None) -> list[sp.SensorFrame]:
    out = tmp_path / "uart.bin"
    args = [str(harness), str(elf), str(out), str(ms), str(heel_mv), str(vcc_mv)]
    if imu_off:
        args += [str(imu_off[0]), str(imu_off[1])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    parser = sp.FrameParser()
    frames = parser.feed(out.read_bytes())
    assert parser.counters == sp.ParserCounters(frames=len(frames)), parser.counters
    return frames


def assert_clock(frames: list[sp.SensorFrame], period_us: int) -> None:
    assert [f.seq for f in frames] == list(range(len(frames))), "sequence gap or restart"
    assert [f.timestamp_us for f in frames] == [i * period_us for i in range(len(frames))]


def counts_for(heel_mv: int, vcc_mv: int) -> int:
    return heel_mv * 1023 // vcc_mv


def test_1_khz_frames_heel_and_imu_in_the_body_frame(harness, firmware, tmp_path):
    frames = simulate(harness, firmware("RATE_HZ=1000"), tmp_path, ms=BOOT_MS + 200, heel_mv=2500)
    assert len(frames) >= 190
    assert_clock(frames, 1000)
    table = fw.fsr_table(fw.build_library(tmp_path))
    acc, gyro, _ = python_imu_to_body(MPU_RAW, fw.mounting(fw.build_library(tmp_path), 0))
    assert (acc, gyro) == ((48, -96, 981), (100, -200, 0))  # 1 g up; 10 and -20 deg/s
    present = [i for i, f in enumerate(frames) if f.flags & sp.FLAG_IMU_PRESENT]
    assert 45 <= present[0] <= 55, "IMU present before (or long after) its 50 ms settling"
    assert present == list(range(present[0], len(frames)))
    for f in frames:
        assert abs(f.heel_raw - counts_for(2500, 5000)) <= 1
        assert f.heel_force == python_fsr(f.heel_raw, table)
        if f.flags & sp.FLAG_IMU_PRESENT:
            assert (f.acc, f.gyro) == (acc, gyro)
        else:
            assert f.acc == f.gyro == (0, 0, 0)
        assert f.flags & ~sp.FLAG_IMU_PRESENT == sp.FLAG_HEEL_PRESENT


def test_default_build_is_100_hz_and_a_lateral_mounting_rotates(harness, firmware, tmp_path):
    frames = simulate(harness, firmware("MOUNT=right_lateral"), tmp_path, ms=BOOT_MS + 300, heel_mv=1000)
    assert len(frames) >= 25
    assert_clock(frames, 10_000)
    acc, gyro, _ = python_imu_to_body(MPU_RAW, fw.mounting(fw.build_library(tmp_path), 2))
    assert frames[-1].flags & sp.FLAG_IMU_PRESENT and (frames[-1].acc, frames[-1].gyro) == (acc, gyro)
    assert acc == (48, -981, -96)


@pytest.mark.parametrize("heel_mv", [5000, 0], ids=["open", "short"])
def test_a_heel_on_a_rail_is_a_heel_fault(harness, firmware, tmp_path, heel_mv):
    frames = simulate(harness, firmware("RATE_HZ=1000"), tmp_path, ms=BOOT_MS + 50, heel_mv=heel_mv)
    assert frames and all(f.flags & sp.FLAG_HEEL_FAULT and f.heel_force == 0 for f in frames)


def test_a_low_supply_sets_low_battery_from_the_first_frame(harness, firmware, tmp_path):
    frames = simulate(harness, firmware("RATE_HZ=1000"), tmp_path, ms=BOOT_MS + 50, heel_mv=2000, vcc_mv=4000)
    assert frames and all(f.flags & sp.FLAG_LOW_BATTERY for f in frames)
    assert abs(frames[0].heel_raw - counts_for(2000, 4000)) <= 1  # ratiometric: the supply cancels
    ok = simulate(harness, firmware("RATE_HZ=1000", "LOW_VCC_MV=0"), tmp_path, ms=BOOT_MS + 50, heel_mv=2000,
                  vcc_mv=4000)
    assert ok and not any(f.flags & sp.FLAG_LOW_BATTERY for f in ok)


def test_an_unplugged_imu_is_absent_and_trusted_again_only_once_reconfigured(harness, firmware, tmp_path):
    off_ms, back_ms = 400, 700
    frames = simulate(harness, firmware("RATE_HZ=1000"), tmp_path, ms=1900, heel_mv=2500,
                      imu_off=(off_ms, back_ms))
    assert_clock(frames, 1000)  # the bus errors and recovery cost no sample
    boot = 1900 - len(frames)  # ms of simulated time before the first frame
    present = [bool(f.flags & sp.FLAG_IMU_PRESENT) for f in frames]
    t_off, t_back = off_ms - boot, back_ms - boot  # in frames (1 per ms)
    assert all(present[60:t_off - 1]) and not any(present[t_off + 1:t_back])
    # retried once a second, then configured (the chip came back at +-2 g, asleep) and settled
    again = present.index(True, t_back)
    assert again - t_back <= 1000 + 60 and all(present[again:])
    acc, gyro, _ = python_imu_to_body(MPU_RAW, fw.mounting(fw.build_library(tmp_path), 0))
    assert all((f.acc, f.gyro) == (acc, gyro) for f in frames[again:])


def test_harness_is_not_skipped_silently():
    """The simulation runs wherever the toolchain can be installed: .ci/install-avr brings simavr too."""
    script = (fw.FIRMWARE_SRC.parent.parent / ".ci" / "install-avr").read_text()
    assert "libsimavr-dev" in script and "simavr/sim_avr.h" in script
    assert shutil.which("make")
