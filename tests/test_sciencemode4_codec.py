"""ScienceMode4 codec: every worked frame of the protocol notes, byte for byte, both ways;
decoder robustness (hypothesis) and the builders' refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sciencemode4 as sm4
from fescontrol.drivers.sciencemode4 import ChannelConfig, Command, ExtendedVersion, Packet, Point

pytestmark = pytest.mark.timeout(60)

WORKED = json.loads((Path(__file__).parent / "data" / "sciencemode4_worked_bytes.json").read_text())

_CH1_20 = {1: ChannelConfig(25.0, sm4.balanced_biphasic(20, 300))}
_CH12_15 = {1: ChannelConfig(25.0, sm4.balanced_biphasic(15, 300)),
            2: ChannelConfig(25.0, sm4.balanced_biphasic(15, 300))}

#: worked-bytes name -> the frame our builders make for it
BUILT = {
    "get_device_id_nr1": lambda: sm4.get_device_id(1),
    "get_device_id_ack_nr1": lambda: sm4.device_id_ack(1, "TESTDEV001"),
    "get_extended_version_nr2": lambda: sm4.get_extended_version(2),
    "get_extended_version_ack_nr2": lambda: sm4.extended_version_ack(
        2, ExtendedVersion((1, 2, 3), (4, 0, 0), 0x12345678, 1, True)),
    "get_stim_status_nr3": lambda: sm4.get_stim_status(3),
    "get_stim_status_ack_nr3": lambda: sm4.stim_status_ack(3, sm4.StimStatus.IDLE, sm4.HighVoltage.OFF),
    "ml_init_nr4": lambda: sm4.ml_init(4, stop_all_on_error=True),
    "ml_init_ack_nr4": lambda: sm4.acknowledgement(4, Command.ML_INIT, 0),
    "ml_update_ch1_20mA_300us_40Hz_nr5": lambda: sm4.ml_update(5, _CH1_20),
    "ml_update_ack_nr5": lambda: sm4.acknowledgement(5, Command.ML_UPDATE, 0),
    "ml_get_current_data_nr6": lambda: sm4.ml_get_current_data(6),
    "ml_get_current_data_ack_nr6": lambda: sm4.current_data_ack(6, active_channels=[1]),
    "ml_get_current_data_ack_ch1_electrode_error_nr6": lambda: sm4.current_data_ack(
        6, active_channels=[], channel_errors={1: sm4.ChannelError.ELECTRODE}),
    "ml_stop_nr9": lambda: sm4.ml_stop(9),
    "ml_stop_ack_nr9": lambda: sm4.acknowledgement(9, Command.ML_STOP, 0),
    "ml_update_ch1_ch2_15mA_300us_40Hz_nr10": lambda: sm4.ml_update(10, _CH12_15),
    "ml_update_ch1_ch2_15mA_ack_nr10": lambda: sm4.acknowledgement(10, Command.ML_UPDATE, 0),
    "escape_ml_get_current_data_nr60": lambda: sm4.ml_get_current_data(60),
    "escape_ml_get_current_data_ack_nr60": lambda: sm4.current_data_ack(60, active_channels=[1]),
    "escape_ml_update_ch1_20mA_300us_60ms_nr11": lambda: sm4.ml_update(
        11, {1: ChannelConfig(60.0, sm4.balanced_biphasic(20, 300))}),
    "escape_ml_update_60ms_ack_nr11": lambda: sm4.acknowledgement(11, Command.ML_UPDATE, 0),
    "ml_update_ack_not_initialized_nr5": lambda: sm4.acknowledgement(5, Command.ML_UPDATE, sm4.Result.NOT_INITIALIZED),
    "ml_update_ack_parameter_error_nr5": lambda: sm4.acknowledgement(5, Command.ML_UPDATE, sm4.Result.PARAMETER_ERROR),
    "general_error_transfer_error_nr0": lambda: sm4.general_error(0, sm4.Result.TRANSFER_ERROR),
    "unknown_cmd_nr0": lambda: sm4.unknown_command(0),
    "ll_init_nr12": lambda: sm4.ll_init(12, high_voltage_on=True),
    "ll_init_ack_nr12": lambda: sm4.acknowledgement(12, Command.LL_INIT, 0),
    "ll_channel_config_ch1_20mA_300us_nr13": lambda: sm4.ll_channel_config(13, 0, sm4.balanced_biphasic(20, 300)),
    "ll_stop_nr14": lambda: sm4.ll_stop(14),
    "ll_stop_ack_nr14": lambda: sm4.acknowledgement(14, Command.LL_STOP, 0),
}


def test_every_worked_entry_has_a_builder():
    assert set(BUILT) == set(WORKED)
    assert len(WORKED) == 30


@pytest.mark.parametrize("name", sorted(WORKED))
def test_builder_makes_the_worked_bytes(name):
    assert BUILT[name]().hex().upper() == WORKED[name]


@pytest.mark.parametrize("name", sorted(WORKED))
def test_decoder_reads_the_worked_bytes_and_reencodes_them(name):
    wire = bytes.fromhex(WORKED[name])
    decoder = sm4.FrameDecoder()
    packets = decoder.feed(wire)
    assert len(packets) == 1, name
    p = packets[0]
    assert sm4.encode_frame(p.nr, p.cmd, p.data) == wire
    assert decoder.crc_errors == decoder.length_errors == decoder.garbage_bytes == 0
    # the nr and command are the ones the name and the builder say
    assert f"nr{p.nr}" in name
    # and byte by byte, one at a time, gives the same packet
    slow = sm4.FrameDecoder()
    got = [q for b in wire for q in slow.feed(bytes((b,)))]
    assert got == [p]


def test_all_worked_frames_back_to_back_in_one_stream():
    wire = b"".join(bytes.fromhex(WORKED[n]) for n in sorted(WORKED))
    packets = sm4.FrameDecoder().feed(wire)
    assert [sm4.encode_frame(*p).hex().upper() for p in packets] == [WORKED[n] for n in sorted(WORKED)]


def test_worked_payloads_parse_to_what_the_notes_say():
    def packet(name) -> Packet:
        return sm4.FrameDecoder().feed(bytes.fromhex(WORKED[name]))[0]

    upd = sm4.parse_ml_update(packet("ml_update_ch1_20mA_300us_40Hz_nr5").data)
    assert upd == {1: ChannelConfig(25.0, (Point(300, 20.0), Point(300, -20.0)), 0)}
    assert upd[1].phase_charge_nc == (6000.0, 6000.0)
    two = sm4.parse_ml_update(packet("ml_update_ch1_ch2_15mA_300us_40Hz_nr10").data)
    assert set(two) == {1, 2} and two[2].points == (Point(300, 15.0), Point(300, -15.0))
    assert sm4.parse_ml_update(packet("escape_ml_update_ch1_20mA_300us_60ms_nr11").data)[1].period_ms == 60.0
    ok = sm4.parse_current_data_ack(packet("ml_get_current_data_ack_nr6").data)
    assert ok == sm4.CurrentData(0, 4, (1,), {})
    bad = sm4.parse_current_data_ack(packet("ml_get_current_data_ack_ch1_electrode_error_nr6").data)
    assert bad.active_channels == () and bad.channel_errors == {1: sm4.ChannelError.ELECTRODE}
    assert sm4.parse_device_id_ack(packet("get_device_id_ack_nr1").data) == (0, "TESTDEV001")
    assert sm4.parse_stim_status_ack(packet("get_stim_status_ack_nr3").data) == (0, 0, 1)
    result, version = sm4.parse_extended_version_ack(packet("get_extended_version_ack_nr2").data)
    assert result == 0 and version.firmware == (1, 2, 3) and version.firmware_hash == 0x12345678
    config = packet("ll_channel_config_ch1_20mA_300us_nr13").data
    enable, channel, connector, points = sm4.parse_ll_channel_config(config)
    assert (enable, channel, connector, points) == (True, 0, 0, (Point(300, 20.0), Point(300, -20.0)))
    assert packet("unknown_cmd_nr0") == Packet(0, Command.UNKNOWN_COMMAND, bytes((sm4.Result.INVALID_COMMAND,)))


def test_crc_check_value_and_hand_checked_header():
    assert sm4.crc16_xmodem(b"123456789") == 0x31C3
    assert sm4.crc16_xmodem(bytes.fromhex("2422")) == 0xCE02
    assert sm4.ml_stop(9)[:9] == bytes.fromhex("F081558159819B8157")


def test_escaped_header_bytes_may_look_like_delimiters():
    # ll_init nr12: the CRC's escaped low byte is F0 on the wire
    wire = bytes.fromhex(WORKED["ll_init_nr12"])
    assert wire[8] == 0xF0
    assert sm4.FrameDecoder().feed(b"\x00\x0f" + wire) == [Packet(12, Command.LL_INIT, b"\x00")]


def test_corrupted_frames_are_rejected_and_the_next_one_is_found():
    good = sm4.ml_get_current_data(7)
    rejected = []
    decoder = sm4.FrameDecoder(on_reject=rejected.append)
    bad_crc = bytearray(sm4.ml_stop(9))
    bad_crc[8] ^= 0x01
    assert decoder.feed(bytes(bad_crc) + good) == [Packet(7, Command.ML_GET_CURRENT_DATA, b"\x04")]
    assert decoder.crc_errors == 1 and rejected == [sm4.RejectedFrame("crc", 9, Command.ML_STOP)]
    # a frame cut short by the next one: rejected at once, not after waiting for its length
    cut = sm4.ml_update(5, _CH1_20)[:14]
    assert decoder.feed(cut + good) == [Packet(7, Command.ML_GET_CURRENT_DATA, b"\x04")]
    assert decoder.length_errors == 1
    # a length that promises more than will ever come, then a good frame: found immediately
    long_header = bytes.fromhex("F08155 8146 8100 8100".replace(" ", "")) + b"\x24"
    assert decoder.feed(long_header + good) == [Packet(7, Command.ML_GET_CURRENT_DATA, b"\x04")]
    # absurd lengths
    assert decoder.feed(bytes.fromhex("F08155815581558155") + good) != []


@settings(max_examples=300, deadline=None)
@given(nr=st.integers(0, 63), cmd=st.integers(0, 1023), data=st.binary(max_size=64),
       noise=st.binary(max_size=16), cut=st.integers(1, 8))
def test_round_trip_with_noise_and_arbitrary_chunking(nr, cmd, data, noise, cut):
    frame = sm4.encode_frame(nr, cmd, data)
    # noise without F0 cannot start a false candidate that swallows the frame
    noise = noise.replace(b"\xf0", b"")
    wire = noise + frame + noise + frame
    decoder = sm4.FrameDecoder()
    got = []
    for i in range(0, len(wire), cut):
        got += decoder.feed(wire[i:i + cut])
    assert got == [Packet(nr, cmd, data)] * 2
    assert frame.count(sm4.START) == 1 + frame[1:9].count(sm4.START)
    assert len(frame) == int.from_bytes(bytes((frame[2] ^ 0x55, frame[4] ^ 0x55)), "big")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_never_raises_on_garbage(blob):
    decoder = sm4.FrameDecoder(on_reject=lambda r: 1 / 0)   # a broken callback too
    for packet in decoder.feed(blob):
        assert 0 <= packet.nr <= 63 and 0 <= packet.cmd <= 1023


@settings(max_examples=200, deadline=None)
@given(current2=st.integers(0, 260), pulse_width_us=st.integers(10, 4095))
def test_points_round_trip_in_half_milliamp_steps(current2, pulse_width_us):
    current = current2 / 2
    for point in sm4.balanced_biphasic(current, pulse_width_us):
        assert sm4.decode_point(sm4.encode_point(point)) == point


def test_builders_refuse_what_the_device_cannot_do():
    with pytest.raises(ValueError, match="packet number 64"):
        sm4.ml_stop(64)
    with pytest.raises(ValueError, match="0.5 mA steps"):
        sm4.current_code(20.2)
    with pytest.raises(ValueError, match="at most ±130"):
        sm4.ml_update(1, {1: ChannelConfig(25.0, sm4.balanced_biphasic(131, 300))})
    with pytest.raises(ValueError, match="period_ms"):
        sm4.ml_update(1, {1: ChannelConfig(25.2, sm4.balanced_biphasic(20, 300))})
    with pytest.raises(ValueError, match="duration_us"):
        sm4.ml_update(1, {1: ChannelConfig(25.0, (Point(4096, 1.0),))})
    with pytest.raises(ValueError, match="channel 9"):
        sm4.ml_update(1, {9: ChannelConfig(25.0, sm4.balanced_biphasic(20, 300))})
    with pytest.raises(ValueError, match="duty load"):
        sm4.ml_update(1, {ch: ChannelConfig(1.0, sm4.balanced_biphasic(1, 100)) for ch in (1, 2, 3, 4)})
    with pytest.raises(ValueError, match="1..16"):
        sm4.ml_update(1, {1: ChannelConfig(25.0, (Point(10, 1.0),) * 17)})
    with pytest.raises(ValueError, match="at most 1200"):
        sm4.encode_frame(0, 1, bytes(1200))


def test_period_for_frequency_never_runs_faster_than_asked():
    assert sm4.period_for_frequency(40) == 25.0
    assert sm4.period_for_frequency(30) == 33.5
    for f in (10, 17, 33, 40, 55.5, 100):
        assert 1000 / sm4.period_for_frequency(f) <= f + 1e-9
    with pytest.raises(ValueError, match="frequency_hz"):
        sm4.period_for_frequency(0)


def test_malformed_payloads_are_refused():
    with pytest.raises(ValueError):
        sm4.parse_ml_update(b"")
    with pytest.raises(ValueError, match="ends inside"):
        sm4.parse_ml_update(bytes.fromhex("01100064"))
    with pytest.raises(ValueError, match="after the last channel"):
        sm4.parse_ml_update(bytes.fromhex("0110006412C5500012C4100000"))
    with pytest.raises(ValueError, match="expected 7"):
        sm4.parse_current_data_ack(b"\x00\x04")


def test_packet_numbers_wrap_at_63():
    assert sm4.next_packet_number(62) == 63 and sm4.next_packet_number(63) == 0
