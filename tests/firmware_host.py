"""The firmware's portable C (firmware/src/*.c: frame, sensor unit, MPU-6050, clock plan) built
for the host.

One source, two compilers: the AVR build links the same files (firmware/Makefile). Here they
are compiled with the host C compiler into a shared library and wrapped with ctypes.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

FIRMWARE_SRC = Path(__file__).resolve().parent.parent / "firmware" / "src"
PORTABLE_SOURCES = ("fes_frame.c", "sensor_unit.c", "mpu6050.c", "fes_plan.c")
# the same warnings the AVR build uses, as errors: host and target must both compile cleanly
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-pedantic", "-Werror")
FRAME_LEN = 33


class Frame(ctypes.Structure):
    """Mirror of fes_frame_t (firmware/src/fes_frame.h), same field order and C types."""

    _fields_ = [("flags", ctypes.c_uint8), ("seq", ctypes.c_uint16), ("timestamp_us", ctypes.c_uint32),
                ("heel_force", ctypes.c_uint16), ("heel_raw", ctypes.c_uint16),
                ("acc", ctypes.c_int16 * 3), ("gyro", ctypes.c_int16 * 3), ("tilt", ctypes.c_int16)]


class FsrPoint(ctypes.Structure):
    _fields_ = [("counts", ctypes.c_uint16), ("force_dn", ctypes.c_uint16)]


class UnitSample(ctypes.Structure):
    """Mirror of fes_unit_sample_t (firmware/src/sensor_unit.h)."""

    _fields_ = [("heel_fitted", ctypes.c_uint8), ("heel_counts", ctypes.c_uint16), ("imu_ok", ctypes.c_uint8),
                ("imu_raw", ctypes.c_int16 * 6), ("low_battery", ctypes.c_uint8)]


class UartPlan(ctypes.Structure):
    """Mirror of fes_uart_plan_t (firmware/src/fes_plan.h)."""

    _fields_ = [("ubrr", ctypes.c_uint16), ("u2x", ctypes.c_uint8), ("actual_baud", ctypes.c_uint32),
                ("error_ppm", ctypes.c_int32)]


class SamplePlan(ctypes.Structure):
    """Mirror of fes_sample_plan_t (firmware/src/fes_plan.h)."""

    _fields_ = [("ocr", ctypes.c_uint16), ("period_us", ctypes.c_uint32)]


class RegWrite(ctypes.Structure):
    """Mirror of fes_reg_write_t (firmware/src/mpu6050.h)."""

    _fields_ = [("reg", ctypes.c_uint8), ("value", ctypes.c_uint8)]


def host_compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:  # the Cython kernel needs it too, so this is a broken machine, not a skip
        raise RuntimeError("no host C compiler (gcc or cc) on PATH; install build-essential")
    return cc


def build_library(out_dir: Path) -> ctypes.CDLL:
    """Compile the portable sources into out_dir/libfesfw.so and load it with typed functions."""
    lib_path = out_dir / "libfesfw.so"
    cmd = [host_compiler(), *CFLAGS, "-shared", "-fPIC", "-I", str(FIRMWARE_SRC), "-o", str(lib_path),
           *(str(FIRMWARE_SRC / s) for s in PORTABLE_SOURCES)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"host build of the firmware's portable C failed:\n{' '.join(cmd)}\n{done.stderr}")
    lib = ctypes.CDLL(str(lib_path))
    lib.fes_crc16_ccitt.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint16]
    lib.fes_crc16_ccitt.restype = ctypes.c_uint16
    lib.fes_frame_encode.argtypes = [ctypes.POINTER(Frame), ctypes.c_char_p]
    lib.fes_frame_encode.restype = ctypes.c_size_t
    lib.fes_fsr_force_dn.argtypes = [ctypes.c_uint16, ctypes.POINTER(FsrPoint), ctypes.c_uint8]
    lib.fes_fsr_force_dn.restype = ctypes.c_uint16
    lib.fes_heel_fault.argtypes = [ctypes.c_uint16]
    lib.fes_heel_fault.restype = ctypes.c_uint8
    lib.fes_imu_to_body.argtypes = [ctypes.c_int16 * 6, ctypes.c_int8 * 9, ctypes.c_int16 * 3,
                                    ctypes.c_int16 * 3]
    lib.fes_imu_to_body.restype = ctypes.c_uint8
    lib.fes_unit_frame.argtypes = [ctypes.POINTER(UnitSample), ctypes.c_int8 * 9, ctypes.c_uint16,
                                   ctypes.c_uint32, ctypes.POINTER(Frame)]
    lib.fes_unit_frame.restype = None
    lib.fes_vcc_mv.argtypes = [ctypes.c_uint16, ctypes.c_uint16]
    lib.fes_vcc_mv.restype = ctypes.c_uint16
    lib.fes_low_battery.argtypes = [ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint16]
    lib.fes_low_battery.restype = ctypes.c_uint8
    lib.fes_uart_plan.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(UartPlan)]
    lib.fes_uart_plan.restype = ctypes.c_uint8
    lib.fes_sample_plan.argtypes = [ctypes.c_uint32, ctypes.c_uint16, ctypes.POINTER(SamplePlan)]
    lib.fes_sample_plan.restype = ctypes.c_uint8
    lib.fes_link_fits.argtypes = [ctypes.c_uint32, ctypes.c_uint16]
    lib.fes_link_fits.restype = ctypes.c_uint8
    lib.fes_mpu6050_dlpf.argtypes = [ctypes.c_uint16]
    lib.fes_mpu6050_dlpf.restype = ctypes.c_uint8
    lib.fes_mpu6050_init_writes.argtypes = [ctypes.c_uint16, RegWrite * 5]
    lib.fes_mpu6050_init_writes.restype = ctypes.c_uint8
    lib.fes_mpu6050_config_ok.argtypes = [ctypes.c_uint8 * 4, ctypes.c_uint8, ctypes.c_uint16]
    lib.fes_mpu6050_config_ok.restype = ctypes.c_uint8
    lib.fes_mpu6050_raw.argtypes = [ctypes.c_uint8 * 14, ctypes.c_int16 * 6]
    lib.fes_mpu6050_raw.restype = None
    return lib


def encode(lib: ctypes.CDLL, seq: int, timestamp_us: int, flags: int, heel_force: int, heel_raw: int,
           acc, gyro, tilt: int) -> bytes:
    """The C encoder's bytes for one frame."""
    frame = Frame(flags, seq, timestamp_us, heel_force, heel_raw, (ctypes.c_int16 * 3)(*acc),
                  (ctypes.c_int16 * 3)(*gyro), tilt)
    out = ctypes.create_string_buffer(FRAME_LEN + 8)  # 8 guard bytes: nothing may be written there
    n = lib.fes_frame_encode(ctypes.byref(frame), out)
    assert out.raw[FRAME_LEN:] == bytes(8), "fes_frame_encode wrote past the frame"
    assert n == FRAME_LEN
    return out.raw[:FRAME_LEN]


def mounting(lib: ctypes.CDLL, index: int) -> list[int]:
    """Row-major rotation matrix fes_mountings[index] (body = R @ sensor)."""
    table = (ctypes.c_int8 * 9 * 4).in_dll(lib, "fes_mountings")
    return list(table[index])


def fsr_table(lib: ctypes.CDLL) -> list[tuple[int, int]]:
    n = ctypes.c_uint8.in_dll(lib, "fes_fsr_table_len").value
    points = (FsrPoint * n).in_dll(lib, "fes_fsr_table")
    return [(p.counts, p.force_dn) for p in points]
