"""The frame hunt both ScienceMode decoders share (drivers/framing.py): the same behaviour on
garbage, on a raising on_reject callback and in the counters, for either protocol."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import framing
from fescontrol.drivers import sciencemode2 as sm2
from fescontrol.drivers import sciencemode4 as sm4

PROTOCOLS = {
    "sciencemode2": (sm2, lambda nr: sm2.encode_frame(nr, sm2.Command.GET_STIMULATION_MODE)),
    "sciencemode4": (sm4, lambda nr: sm4.encode_frame(nr % 64, sm4.Command.GET_DEVICE_ID)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_raising_callback_does_not_stop_decoding(name):
    module, frame = PROTOCOLS[name]
    calls = []

    def on_reject(rejected):
        calls.append(rejected)
        raise RuntimeError("callback bug")

    good = frame(5)
    bad = bytearray(good)
    bad[-2] ^= 0x01                                    # corrupt the body: CRC no longer matches
    decoder = module.FrameDecoder(on_reject=on_reject)
    packets = decoder.feed(bytes(bad) + good)
    assert len(packets) == 1 and len(calls) == 1
    assert isinstance(calls[0], module.RejectedFrame) and calls[0].reason in ("crc", "length")
    assert decoder.stats == {"frames": 1, "crc_errors": decoder.crc_errors,
                             "length_errors": decoder.length_errors,
                             "garbage_bytes": decoder.garbage_bytes}
    assert decoder.crc_errors + decoder.length_errors == 1


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(PROTOCOLS)), junk=st.binary(max_size=40),
       nrs=st.lists(st.integers(0, 63), min_size=1, max_size=5), cut=st.integers(1, 7))
def test_frames_survive_garbage_and_any_split(name, junk, nrs, cut):
    module, frame = PROTOCOLS[name]
    junk = junk.replace(bytes((framing.START,)), b"")   # a stray F0 may start a false candidate
    stream = junk + b"".join(frame(nr) for nr in nrs)
    decoder = module.FrameDecoder()
    packets = []
    for i in range(0, len(stream), cut):
        packets += decoder.feed(stream[i:i + cut])
    assert len(packets) == len(nrs) and decoder.frames == len(nrs)
    assert decoder.garbage_bytes == len(junk)


@pytest.mark.timeout(60)
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_stuffing_round_trips_and_hides_the_delimiters(data):
    stuffed = framing.stuff(data)
    assert framing.unstuff(stuffed) == data
    assert framing.START not in stuffed and framing.STOP not in stuffed
