"""A ScienceMode2 client nobody here wrote drives our RehaStim2 emulator.

pysciencemode 1.1.5 (MIT, used with real RehaStim2 devices) runs against
``fes emulator rehastim2 --pty`` started as a real process: connect (Init/InitAck), its
StopChannelListMode right after connecting (the device is in start mode), InitChannelListMode
with its default 2 ms inter-pulse interval, StartChannelListMode, an update with current, and
StopChannelListMode. With ``show_log=True`` its acknowledgement thread treats any non-zero
result as fatal (``error_occured``); the emulator's pulse record (its summary on SIGTERM)
must show what was commanded.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

pysciencemode = pytest.importorskip("pysciencemode", reason="pysciencemode is a test dependency (setup.py [test])")
from pysciencemode import Channel, Device, Rehastim2  # noqa: E402

TRAIN = re.compile(r"^\s*ch(\d+):\s+(\d+) mA\s+(\d+) us\s+([\d.]+) Hz\s+t=\s*([\d.]+)\.\.\s*([\d.]+) s "
                   r"\(([\d.]+) s, (\d+) pulses\)")


def start_emulator() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fescontrol.cli", "emulator", "rehastim2", "--pty"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    port = proc.stdout.readline().strip()
    if not port.startswith("/dev/"):
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"the emulator printed no port: {port!r} {out!r} {err!r}")
    return proc, port


def stop_emulator(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return out


class RecordingRehastim2(Rehastim2):
    """pysciencemode's client, unchanged, except that every packet it takes as an answer is
    also kept here (its own ack list is emptied by its checking thread)."""

    def __init__(self, *args, **kwargs):
        self.answers: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _get_last_ack(self, init: bool = False):
        packet = super()._get_last_ack(init)
        self.answers.append(bytes(packet))
        return packet


@pytest.mark.timeout(60)
def test_pysciencemode_init_start_update_stop_runs_cleanly():
    thread_errors: list[BaseException] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)
    proc, port = start_emulator()
    stim = None
    try:
        stim = RecordingRehastim2(port, show_log=True)             # Init -> InitAck, then its ack thread
        channel = Channel(mode="Single", no_channel=1, amplitude=0, pulse_width=300, name="peroneal",
                          device_type=Device.Rehastim2)
        # init_channel first sends StopChannelListMode (the device is in start mode), then
        # InitChannelListMode with t1 = 25 ms (40 Hz) and the default t2 = 2 ms
        stim.init_channel(stimulation_interval=25, list_channels=[channel])
        stim.start_stimulation(upd_list_channels=[channel])            # started at 0 mA
        channel.set_amplitude(20)
        stim.start_stimulation(upd_list_channels=[channel])            # update with current
        time.sleep(0.6)
        channel.set_amplitude(12)
        channel.set_pulse_width(200)
        stim.start_stimulation(upd_list_channels=[channel])
        time.sleep(0.4)
        stim.end_stimulation()                                         # StopChannelListMode
        time.sleep(0.1)                 # its ack thread checks every 5 ms
        acks = [(p[6], p[7]) for p in stim.answers[1:]]
        error = stim.error_occured
    finally:
        if stim is not None:
            stim.disconnect()
            stim.close_port()
        threading.excepthook = previous_hook
        summary = stop_emulator(proc)
    assert thread_errors == [] and not error, (thread_errors, summary)
    assert stim.answers[0][6] == 1                          # the device's Init
    # every command got its acknowledgement with result 0: Stop, Init, Start x3, Stop
    assert acks == [(35, 0), (31, 0), (33, 0), (33, 0), (33, 0), (35, 0)], acks
    trains = [TRAIN.match(line).groups() for line in summary.splitlines() if TRAIN.match(line)]
    assert [(int(ch), int(ma), int(us), float(hz)) for ch, ma, us, hz, *_ in trains] == \
        [(1, 20, 300, 40.0), (1, 12, 200, 40.0)], summary
    (_, _, _, _, _, end1, dur1, n1), (_, _, _, _, start2, _, dur2, n2) = trains
    assert abs(float(start2) - float(end1)) < 0.01            # the update replaced the train at once
    assert 0.5 <= float(dur1) <= 0.9 and 0.3 <= float(dur2) <= 0.7, summary
    assert abs(int(n1) - float(dur1) * 40) <= 2 and abs(int(n2) - float(dur2) * 40) <= 2, summary
    assert "0 watchdog reset(s)" in summary and "single pulse" not in summary.split("\n", 1)[1], summary
