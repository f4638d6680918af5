"""The sensor unit firmware builds with Debian's avr-gcc + avr-libc and fits an ATmega328P.

The toolchain comes from .ci/install-avr when it is missing (root and apt-get, as in CI); the
test skips, saying why, only when that script reports it cannot install here (exit 3: no
apt-get or no root). Any other install failure fails the test.

Fit (docs/firmware.md, "Flash and RAM"): flash (.text + .data) at most 32256 bytes, the
ATmega328P's 32768 less optiboot's 512 (Uno, Nano with the current bootloader); RAM
(.data + .bss + .noinit) must leave at least 1536 of the 2048 bytes of SRAM to the stack.
The numbers are read from avr-size here, not taken from the Makefile's own check.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import firmware_host as fw

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
FLASH_MAX = 32768 - 512
SRAM = 2048
STACK_MARGIN = 1536
TOOLS = ("avr-gcc", "avr-objcopy", "avr-size", "avr-nm")


@pytest.fixture(scope="module")
def toolchain():
    if all(shutil.which(t) for t in TOOLS) and Path("/usr/lib/avr/include/avr/io.h").is_file() and \
            Path("/usr/include/simavr/sim_avr.h").is_file():  # simavr: tests/test_firmware_sim.py
        return
    done = subprocess.run(["bash", str(ROOT / ".ci" / "install-avr")], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    if done.returncode == 3:
        pytest.skip(f"AVR toolchain missing and not installable here: {done.stderr.strip()}")
    assert done.returncode == 0, f".ci/install-avr failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert all(shutil.which(t) for t in TOOLS), ".ci/install-avr succeeded but the tools are not on PATH"


def make(build: Path, *options: str, target: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["make", "-C", str(FIRMWARE), f"BUILD={build}", *options, *([target] if target else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def sections(elf: Path) -> dict[str, int]:
    out = subprocess.run(["avr-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\.\w+)\s+(\d+)\s+\d+", out, re.M)}


@pytest.fixture(scope="module")
def default_build(toolchain, tmp_path_factory):
    build = tmp_path_factory.mktemp("fw")
    done = make(build)
    assert done.returncode == 0, f"make -C firmware failed:\n{done.stdout}\n{done.stderr}"
    return build, done.stdout


def test_default_build_fits_an_atmega328p_with_optiboot(default_build):
    build, out = default_build
    size = sections(build / "fes_sensor.elf")
    flash = size[".text"] + size.get(".data", 0)
    ram = size.get(".data", 0) + size.get(".bss", 0) + size.get(".noinit", 0)
    assert flash <= FLASH_MAX, f"flash {flash} B > {FLASH_MAX} B usable with optiboot"
    assert SRAM - ram >= STACK_MARGIN, f"RAM {ram} B leaves {SRAM - ram} B for the stack, < {STACK_MARGIN}"
    # the build prints the same numbers (docs/firmware.md quotes these lines)
    assert f"flash: {flash} bytes of {FLASH_MAX} usable" in out
    assert f"ram: {ram} bytes .data+.bss+.noinit of {SRAM}, {SRAM - ram} left for the stack" in out
    assert "Program:" in out and "Data:" in out  # avr-size --format=avr


def test_default_build_makes_1_mbd_exactly_at_100_hz(default_build):
    _, out = default_build
    assert "uart: 1000000 Bd = 16000000 Hz / (16 x (UBRR0 0 + 1)), U2X0=0, error +0.000 % (0 ppm)" in out
    assert "sample clock: 100 Hz = Timer1 CTC, prescaler 8, OCR1A 19999, period 10000 us exactly" in out


def test_hex_is_the_elf_and_flashable(default_build):
    build, _ = default_build
    lines = (build / "fes_sensor.hex").read_text().split()
    assert lines[-1] == ":00000001FF", "Intel HEX without its end record"
    data = 0
    for line in lines:
        raw = bytes.fromhex(line[1:])
        assert sum(raw) & 0xFF == 0, f"bad checksum in {line}"
        if raw[3] == 0:
            data += raw[0]
    size = sections(build / "fes_sensor.elf")
    assert data == size[".text"] + size.get(".data", 0)


def test_no_dynamic_allocation_and_the_expected_interrupts(default_build):
    build, _ = default_build
    symbols = subprocess.run(["avr-nm", str(build / "fes_sensor.elf")], capture_output=True, text=True,
                             check=True).stdout
    names = {line.split()[-1] for line in symbols.splitlines() if line.strip()}
    assert not names & {"malloc", "free", "calloc", "realloc", "__brkval"}, "dynamic allocation linked in"
    # ATmega328P vectors: 11 TIMER1_COMPA (sample clock), 19 USART_UDRE (frame out), 21 ADC
    assert {"__vector_11", "__vector_19", "__vector_21"} <= names


def test_the_firmware_links_the_sources_the_host_tests_compile():
    makefile = (FIRMWARE / "Makefile").read_text()
    portable = re.search(r"^PORTABLE\s*:=(.*)$", makefile, re.M).group(1).split()
    assert portable == [f"src/{s}" for s in fw.PORTABLE_SOURCES]


@pytest.mark.parametrize("options", [
    ("RATE_HZ=1000",), ("RATE_HZ=1000", "BAUD=500000"), ("RATE_HZ=125", "BAUD=500000"),
    ("MOUNT=dorsum_reversed",), ("MOUNT=right_lateral", "HEEL=0"), ("MOUNT=left_lateral", "IMU=0"),
    ("LOW_VCC_MV=0",),
], ids=lambda o: " ".join(o))
def test_documented_options_build_and_fit(toolchain, tmp_path, options):
    done = make(tmp_path, *options)
    assert done.returncode == 0, f"{options}:\n{done.stdout}\n{done.stderr}"
    flash = int(re.search(r"^flash: (\d+) bytes", done.stdout, re.M).group(1))
    ram = int(re.search(r"^ram: (\d+) bytes", done.stdout, re.M).group(1))
    assert flash <= FLASH_MAX and SRAM - ram >= STACK_MARGIN


@pytest.mark.parametrize("options, says", [
    (("BAUD=921600",), "921600 Bd is NOT exact"),
    (("RATE_HZ=300",), "300 Hz has no exact Timer1 period"),
    (("RATE_HZ=1000", "BAUD=250000"), "132.0 % of 250000 Bd"),
    (("MOUNT=ankle",), "MOUNT=ankle: expected one of dorsum dorsum_reversed right_lateral left_lateral"),
], ids=lambda o: " ".join(o) if isinstance(o, tuple) else "")
def test_a_unit_the_host_could_not_trust_is_refused(toolchain, tmp_path, options, says):
    done = make(tmp_path, *options)
    assert done.returncode != 0 and says in done.stdout + done.stderr
    assert not (tmp_path / "fes_sensor.hex").exists()


@pytest.mark.parametrize("options, says", [
    (("BAUD=921600",), "BAUD is not made exactly from F_CPU"),
    (("RATE_HZ=300",), "RATE_HZ must divide 1000000"),
    (("RATE_HZ=1000", "BAUD=250000"), "BAUD too slow for RATE_HZ"),
    (("RATE_HZ=2000",), "RATE_HZ must be within 100..1000 Hz"),
    (("HEEL=0", "IMU=0"), "a unit without sensors"),
], ids=lambda o: " ".join(o) if isinstance(o, tuple) else "")
def test_the_compiler_refuses_too_without_the_plan_step(toolchain, tmp_path, options, says):
    """unit_config.h's #error checks hold even when the ELF is made directly."""
    done = make(tmp_path, *options, target=str(tmp_path / "fes_sensor.elf"))
    assert done.returncode != 0 and says in done.stderr
