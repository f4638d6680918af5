"""ScienceMode2 codec: the protocol document's worked bytes, stuffing/CRC round trips, resync."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sciencemode2 as sm

# The worked example of /work/shared/protocols/sciencemode2.md (channel 1, 300 µs, 20 mA, 40 Hz)
WORKED = [
    ("device Init pkt 0", "F0 81 47 81 56 00 01 01 0F", sm.Packet(0, 1, b"\x01"),
     lambda: sm.device_init(0, version=1)),
    ("host InitAck", "F0 81 7F 81 56 00 02 00 0F", sm.Packet(0, 2, b"\x00"),
     lambda: sm.init_ack(0)),
    ("host InitChannelListMode pkt 1", "F0 81 C7 81 5C 01 1E 00 01 00 0D 00 30 00 0F",
     sm.Packet(1, 30, bytes([0x00, 0x01, 0x00, 0x0D, 0x00, 0x30, 0x00])),
     lambda: sm.init_channel_list_mode(1, [1], 40.0)),
    ("host StartChannelListMode pkt 2", "F0 81 36 81 53 02 20 00 01 2C 14 0F",
     sm.Packet(2, 32, bytes([0x00, 0x01, 0x2C, 0x14])),
     lambda: sm.start_channel_list_mode(2, [(0, 300, 20)])),
    ("host Stop pkt 4", "F0 81 EF 81 57 04 22 0F", sm.Packet(4, 34, b""),
     lambda: sm.stop_channel_list_mode(4)),
]
WORKED_IDS = [w[0] for w in WORKED]


@pytest.mark.parametrize("name,wire,packet,build", WORKED, ids=WORKED_IDS)
def test_worked_example_encodes_byte_for_byte(name, wire, packet, build):
    assert build() == bytes.fromhex(wire)
    assert sm.encode_frame(*packet) == bytes.fromhex(wire)


@pytest.mark.parametrize("name,wire,packet,build", WORKED, ids=WORKED_IDS)
def test_worked_example_decodes(name, wire, packet, build):
    decoder = sm.FrameDecoder()
    assert decoder.feed(bytes.fromhex(wire)) == [packet]
    assert (decoder.crc_errors, decoder.length_errors, decoder.garbage_bytes) == (0, 0, 0)


def test_worked_example_as_one_stream_fed_byte_by_byte():
    stream = b"".join(bytes.fromhex(w[1]) for w in WORKED)
    decoder = sm.FrameDecoder()
    got = [p for i in range(len(stream)) for p in decoder.feed(stream[i:i + 1])]
    assert got == [w[2] for w in WORKED]


def test_worked_payloads_parse_back():
    cfg = sm.parse_init_channel_list_mode(WORKED[2][2].data)
    assert cfg == sm.ChannelListConfig(0, (1,), (), 8.0, 25.0, 0)
    assert sm.parse_start_channel_list_mode(WORKED[3][2].data) == [(0, 300, 20)]


def test_crc8_check_value():
    # CRC-8 (poly 0x07, init 0, no reflection): the catalogue's check value for "123456789"
    assert sm.crc8(b"123456789") == 0xF4
    assert sm.crc8(b"") == 0


def test_stuffing_escapes_exactly_f0_0f_81():
    assert sm.stuff(bytes([0xF0, 0x0F, 0x81, 0x55, 0x00])) == bytes([0x81, 0xA5, 0x81, 0x5A, 0x81, 0xD4, 0x55, 0x00])
    assert sm.unstuff(sm.stuff(bytes(range(256)))) == bytes(range(256))
    assert sm.unstuff(b"\x00\x81") is None          # dangling escape


def test_frame_with_stuffed_payload_has_stuffed_len_and_crc():
    frame = sm.encode_frame(0x81, 0x0F, b"\xF0")
    body = bytes([0x81, 0xD4, 0x81, 0x5A, 0x81, 0xA5])
    assert frame == bytes([0xF0, 0x81, sm.crc8(body) ^ 0x55, 0x81, len(body) ^ 0x55]) + body + b"\x0F"
    assert sm.FrameDecoder().feed(frame) == [sm.Packet(0x81, 0x0F, b"\xF0")]


def test_decoder_accepts_extra_escapes_from_other_clients():
    # some clients also escape 0x55 (and 0x0A); CRC/LEN are over the bytes as sent
    body = bytes([0x07, 0x20, 0x81, 0x00, 0x81, 0x5F])       # pkt 7, cmd 32, data 55 0A
    frame = bytes([0xF0, 0x81, sm.crc8(body) ^ 0x55, 0x81, len(body) ^ 0x55]) + body + b"\x0F"
    assert sm.FrameDecoder().feed(frame) == [sm.Packet(7, 32, b"\x55\x0A")]


# --------------------------------------------------------------------------- property tests

stuffy_bytes = st.lists(st.one_of(st.sampled_from([0xF0, 0x0F, 0x81, 0x55]), st.integers(0, 255)),
                        max_size=60).map(bytes)
bytes_ = st.one_of(stuffy_bytes, st.binary(max_size=60))
packets = st.builds(sm.Packet, st.integers(0, 255), st.integers(0, 255), bytes_)


@given(packet=packets, cuts=st.lists(st.integers(0, 200), max_size=5))
def test_round_trip_any_packet_in_any_chunks(packet, cuts):
    frame = sm.encode_frame(*packet)
    decoder = sm.FrameDecoder()
    got, start = [], 0
    for cut in sorted(set(c for c in cuts if c < len(frame))) + [len(frame)]:
        got += decoder.feed(frame[start:cut])
        start = cut
    assert got == [packet]
    assert (decoder.crc_errors, decoder.length_errors, decoder.garbage_bytes) == (0, 0, 0)


@given(items=st.lists(st.tuples(st.binary(max_size=30).map(lambda b: b.replace(b"\xF0", b"")), packets),
                      min_size=1, max_size=8),
       chunk=st.integers(1, 64))
def test_garbage_without_start_bytes_between_frames_loses_nothing(items, chunk):
    stream = b"".join(garbage + sm.encode_frame(*p) for garbage, p in items)
    decoder = sm.FrameDecoder()
    got = [p for i in range(0, len(stream), chunk) for p in decoder.feed(stream[i:i + chunk])]
    assert got == [p for _, p in items]
    assert decoder.garbage_bytes == sum(len(g) for g, _ in items)


def _is_subsequence(needle, haystack) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.binary(max_size=40), packets), min_size=1, max_size=8),
       chunk=st.integers(1, 64))
def test_arbitrary_garbage_between_frames_recovers_every_frame(items, chunk):
    # Garbage may hold false starts (F0 81 ...). Ending it with 0F 0F 0F closes any false start,
    # as a quiet gap on a real line would; every real frame after it must come out.
    stream = b"".join(garbage + b"\x0F\x0F\x0F" + sm.encode_frame(*p) for garbage, p in items)
    decoder = sm.FrameDecoder()
    got = [p for i in range(0, len(stream), chunk) for p in decoder.feed(stream[i:i + chunk])]
    assert _is_subsequence([p for _, p in items], got)


@given(noise=st.binary(max_size=400), chunk=st.integers(1, 50))
def test_random_bytes_never_raise(noise, chunk):
    decoder = sm.FrameDecoder(on_reject=lambda r: None)
    for i in range(0, len(noise), chunk):
        assert isinstance(decoder.feed(noise[i:i + chunk]), list)
    assert decoder.garbage_bytes <= len(noise)


def test_false_start_right_before_a_frame_does_not_hide_it():
    frame = bytes.fromhex(WORKED[0][1])
    for prefix in (b"\xF0", b"\xF0\x81", b"\xF0\x81\x00", b"\xF0\x81\x00\x81", b"\xF0\x81\x00\x81\x55"):
        assert sm.FrameDecoder().feed(prefix + frame) == [WORKED[0][2]], prefix.hex()


# --------------------------------------------------------------------------- rejection

def test_corrupted_crc_is_rejected_and_counted_then_resyncs():
    bad = bytearray(bytes.fromhex(WORKED[3][1]))
    bad[2] ^= 0x01
    rejected = []
    decoder = sm.FrameDecoder(on_reject=rejected.append)
    assert decoder.feed(bytes(bad)) == []
    assert decoder.crc_errors == 1 and decoder.length_errors == 0
    assert rejected == [sm.RejectedFrame("crc", 2, 32)]
    assert decoder.feed(bytes.fromhex(WORKED[4][1])) == [WORKED[4][2]]


def test_corrupted_data_byte_is_a_crc_error():
    bad = bytearray(bytes.fromhex(WORKED[3][1]))
    bad[-2] = 0x7E                      # 126 mA instead of 20 mA
    decoder = sm.FrameDecoder()
    assert decoder.feed(bytes(bad)) == []
    assert decoder.crc_errors == 1


@pytest.mark.parametrize("delta", [-1, 1, 5])
def test_wrong_len_is_rejected(delta):
    bad = bytearray(bytes.fromhex(WORKED[2][1]))
    bad[4] = ((bad[4] ^ 0x55) + delta) ^ 0x55
    rejected = []
    decoder = sm.FrameDecoder(on_reject=rejected.append)
    assert decoder.feed(bytes(bad) + bytes.fromhex(WORKED[4][1])) == [WORKED[4][2]]
    assert decoder.length_errors == 1 and decoder.crc_errors == 0
    assert rejected[0].reason == "length" and rejected[0].cmd == 30


def test_frame_cut_by_a_new_start_is_rejected():
    whole = bytes.fromhex(WORKED[3][1])
    decoder = sm.FrameDecoder()
    assert decoder.feed(whole[:8] + whole) == [WORKED[3][2]]
    assert decoder.length_errors == 1


# --------------------------------------------------------------------------- builders

@pytest.mark.parametrize("current", [127, 130, 255, -1])
def test_current_out_of_range_names_value_and_range(current):
    with pytest.raises(ValueError, match=rf"current_ma={current}.*0\.\.126 mA"):
        sm.start_channel_list_mode(1, [(0, 300, current)])


@pytest.mark.parametrize("width", [1, 19, 501, 1000, -20])
def test_pulse_width_out_of_range_names_value_and_range(width):
    with pytest.raises(ValueError, match=rf"pulse_width_us={width}.*0 or 20\.\.500"):
        sm.start_channel_list_mode(1, [(0, width, 10)])


@pytest.mark.parametrize("width,current", [(0, 0), (20, 0), (500, 126), (0, 126)])
def test_limits_are_inclusive(width, current):
    frame = sm.start_channel_list_mode(3, [(0, width, current)])
    (packet,) = sm.FrameDecoder().feed(frame)
    assert sm.parse_start_channel_list_mode(packet.data) == [(0, width, current)]


def test_fractional_current_is_refused_by_the_codec():
    with pytest.raises(ValueError, match="current_ma=20.5"):
        sm.start_channel_list_mode(1, [(0, 300, 20.5)])


@pytest.mark.parametrize("frequency_hz,code", [(40.0, 48), (125.0, 14), (50.0, 38), (30.0, 65), (1.0, 1998)])
def test_main_interval_code_rounds_period_up(frequency_hz, code):
    assert sm.main_interval_code(frequency_hz) == code
    assert 1000.0 / (1.0 + 0.5 * code) <= frequency_hz + 1e-9


@pytest.mark.parametrize("frequency_hz", [126.0, 200.0, 0.5, 0.0, -40.0, float("nan")])
def test_frequency_out_of_range(frequency_hz):
    with pytest.raises(ValueError, match="frequency_hz"):
        sm.init_channel_list_mode(1, [1], frequency_hz)


@pytest.mark.parametrize("t2", [7.5, 2.0, 8.25, 130.0])
def test_inter_pulse_interval_validated(t2):
    with pytest.raises(ValueError, match="inter_pulse_ms"):
        sm.init_channel_list_mode(1, [1], 40.0, inter_pulse_ms=t2)


def test_channel_masks_and_lf_settings():
    frame = sm.init_channel_list_mode(9, [1, 3, 8], 20.0, lf_factor=2, lf_channels=[3], inter_pulse_ms=10.0)
    (packet,) = sm.FrameDecoder().feed(frame)
    assert packet.data[:4] == bytes([2, 0b1000_0101, 0b0000_0100, 17])
    cfg = sm.parse_init_channel_list_mode(packet.data)
    assert cfg.channels == (1, 3, 8) and cfg.lf_channels == (3,) and cfg.main_interval_ms == 50.0
    for bad in ([0], [9], [1, 1], []):
        with pytest.raises(ValueError):
            sm.init_channel_list_mode(1, bad, 40.0)
    with pytest.raises(ValueError, match="subset"):
        sm.init_channel_list_mode(1, [1], 40.0, lf_channels=[2])
    with pytest.raises(ValueError, match="lf_factor"):
        sm.init_channel_list_mode(1, [1], 40.0, lf_factor=8)


def test_single_pulse_channel_is_zero_based_on_the_wire():
    (packet,) = sm.FrameDecoder().feed(sm.single_pulse(5, 1, 200, 10))
    assert packet == sm.Packet(5, 36, bytes([0, 0, 200, 10]))
    assert sm.parse_single_pulse(packet.data) == (1, 200, 10)
    with pytest.raises(ValueError, match="channel"):
        sm.single_pulse(5, 0, 200, 10)


def test_small_commands_and_acknowledgements():
    decode = lambda f: sm.FrameDecoder().feed(f)  # noqa: E731
    assert decode(sm.watchdog(7)) == [sm.Packet(7, 4, b"")]
    assert decode(sm.get_stimulation_mode(8)) == [sm.Packet(8, 10, b"")]
    assert decode(sm.acknowledgement(8, 10, 0, b"\x02")) == [sm.Packet(8, 11, b"\x00\x02")]
    (nack,) = decode(sm.acknowledgement(3, 32, -2))
    assert nack.cmd == 33 and sm.signed_byte(nack.data[0]) == -2
    (err,) = decode(sm.stimulation_error(1, -3))
    assert err.cmd == 38 and sm.signed_byte(err.data[0]) == -3
    with pytest.raises(ValueError):
        sm.encode_frame(256, 1)
    with pytest.raises(ValueError, match="255"):
        sm.encode_frame(0, 1, b"\x81" * 200)
