"""Profiles: bundled ones valid; every bad value refused with field, value and range."""
from __future__ import annotations

import enum
import json

import pytest
import yaml
from click.testing import CliRunner

from fescontrol.core import limits
from fescontrol.cli import main
from fescontrol.core.profile import (Profile, ProfileError, bundled_profile_path, load_profile,
                                profile_from_dict)

from .conftest import BUNDLED_PROFILES


def base_dict() -> dict:
    return load_profile(bundled_profile_path("default")).model_dump(mode="json")


def refused(data: dict) -> list[str]:
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data, "patient.yaml")
    assert all(line.startswith("patient.yaml: ") for line in str(info.value).splitlines())
    return info.value.problems


@pytest.mark.parametrize("name", BUNDLED_PROFILES)
def test_bundled_profiles_are_valid(name):
    profile = load_profile(bundled_profile_path(name))
    assert profile.patient.amplitude_max_ma <= profile.stimulation.amplitude_ma


def test_default_profile_is_commented():
    text = bundled_profile_path("default").read_text()
    assert "NOT A CLEARED MEDICAL DEVICE" in text
    assert text.count("#") > 20


@pytest.mark.parametrize("section, field, value, expect", [
    ("stimulation", "amplitude_ma", limits.AMPLITUDE_MAX_MA + 1, "≤ 100"),
    ("stimulation", "pulse_width_us", limits.PULSE_WIDTH_MAX_US + 1, "20 ≤ x ≤ 500"),
    ("stimulation", "frequency_hz", 5, "10 ≤ x ≤ 100"),
    ("envelope", "max_stim_ms", limits.MAX_STIM_MS_MAX + 1, "≤ 3000"),
    ("envelope", "extension_ms", -5, "0 ≤ x"),
    ("device", "stale_ms", limits.STALE_MS_MAX + 1, "≤ 200"),
    ("device", "keepalive_ms", 600, "≤ 500"),
    ("trigger", "mode", "knee", "'heel'"),
])
def test_out_of_range_field_names_path_value_and_range(section, field, value, expect):
    data = base_dict()
    data[section][field] = value
    (problem,) = refused(data)
    assert problem.startswith(f"{section}.{field} = {value!r}")
    assert expect in problem


def test_hard_caps_cannot_be_raised_by_any_profile():
    for field, cap in (("amplitude_ma", limits.AMPLITUDE_MAX_MA), ("pulse_width_us", limits.PULSE_WIDTH_MAX_US)):
        schema_max = Profile.model_json_schema()["$defs"]["StimulationChannel"]["properties"][field]
        assert schema_max.get("maximum") == cap


def test_one_message_per_problem():
    data = base_dict()
    data["stimulation"]["amplitude_ma"] = 500
    data["envelope"]["ramp_up_ms"] = 99999
    data["unknown_section"] = 1
    problems = refused(data)
    assert len(problems) == 3
    assert any(p.startswith("unknown_section = 1: Extra inputs") for p in problems)


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d["envelope"].update(ramp_up_ms=900, ramp_down_ms=900, max_stim_ms=1500),
     "envelope: ramp_up_ms + ramp_down_ms = 1800 ms; allowed ≤ max_stim_ms (1500 ms)"),
    (lambda d: d["patient"].update(amplitude_max_ma=40),
     "patient.amplitude_max_ma (40 mA) must not exceed stimulation.amplitude_ma (30 mA)"),
    (lambda d: d["patient"].update(amplitude_min_ma=29, amplitude_max_ma=20),
     "amplitude_min_ma (29) must not exceed amplitude_max_ma (20)"),
    (lambda d: d["trigger"]["heel"].update(on_fraction=0.1, off_fraction=0.3), "hysteresis"),
    (lambda d: d["stimulation"].update(amplitude_ma=100, pulse_width_us=400), "µC per phase"),
    (lambda d: d["device"].update(sample_rate_hz=50, stale_ms=30), "two sample periods"),
])
def test_cross_field_rules(mutate, expect):
    data = base_dict()
    mutate(data)
    assert any(expect in p for p in refused(data))


def test_missing_required_field():
    data = base_dict()
    del data["stimulation"]["amplitude_ma"]
    assert refused(data) == ["stimulation.amplitude_ma: missing (required field)"]


def test_load_profile_reports_file_yaml_errors(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("stimulation: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken.yaml: not valid YAML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.yaml")


def test_cli_config_check_ok_and_refusal(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(bundled_profile_path("default"))])
    assert ok.exit_code == 0, ok.output
    assert ": ok — default (left leg): 30 mA, 300 µs, 40 Hz" in ok.output
    data = base_dict()
    data["stimulation"]["amplitude_ma"] = 250
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: stimulation.amplitude_ma = 250" in result.output


def test_cli_schema_is_json_schema():
    result = CliRunner().invoke(main, ["config", "schema"])
    schema = json.loads(result.output)
    assert schema["title"] == "Profile"
    assert "stimulation" in schema["required"]


# --- strict reading (issue 17): what the file says is what is used, or it is refused --------

DEFAULT_TEXT = bundled_profile_path("default").read_text(encoding="utf-8")


def default_text_with(old: str, new: str) -> str:
    """default.yaml with the first line containing ``old`` changed to contain ``new``."""
    assert old in DEFAULT_TEXT, old
    return DEFAULT_TEXT.replace(old, new, 1)


def load_refused(tmp_path, text: str | bytes, name: str = "patient.yaml") -> list[str]:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    return info.value.problems


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    return hits[nth - 1]


def test_duplicate_key_is_refused_naming_line_and_key(tmp_path):
    text = default_text_with("  amplitude_ma: 30 ", "  amplitude_ma: 30\n  amplitude_ma: 95 ")
    (problem,) = load_refused(tmp_path, text)
    first, second = line_of(text, "amplitude_ma: 30"), line_of(text, "amplitude_ma: 95")
    assert problem.startswith(f"line {second}: duplicate key 'amplitude_ma' (first at line {first})")


def test_duplicate_section_is_refused(tmp_path):
    text = DEFAULT_TEXT + "\nstimulation: {amplitude_ma: 95, pulse_width_us: 300}\n"
    (problem,) = load_refused(tmp_path, text)
    assert "duplicate key 'stimulation'" in problem


def _alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * fan_out) + "]")
    return DEFAULT_TEXT.replace("name: default", "name: *a%d" % (levels - 1)) + "\n".join(lines) + "\n"


@pytest.mark.timeout(20)
def test_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    import tracemalloc
    text = _alias_bomb()
    assert len(text.encode()) - len(DEFAULT_TEXT.encode()) < 600   # 9**9 ≈ 387 million strings once expanded
    tracemalloc.start()
    try:
        (problem,) = load_refused(tmp_path, text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "alias *a8 refused" in problem or "anchor &a0 refused" in problem
    assert len(problem) < 200
    assert peak < 20 * 1024 * 1024            # bytes: bounded by the file, not the expansion


@pytest.mark.timeout(30)
def test_cli_config_check_refuses_alias_bomb_in_one_short_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.output) < 400 and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("snippet, expect", [
    ("defaults: &d {ramp_up_ms: 100}\n", "anchor &d refused"),
    ("extra: !!int 30\n", "tag tag:yaml.org,2002:int refused"),
])
def test_anchors_and_tags_are_refused(tmp_path, snippet, expect):
    (problem,) = load_refused(tmp_path, DEFAULT_TEXT + snippet)
    assert expect in problem and problem.startswith("line ")


def test_non_utf8_file_gets_one_clear_line(tmp_path):
    text = DEFAULT_TEXT.encode("utf-8").replace(b"name: default", b"name: caf" + bytes([0xE9]))
    (problem,) = load_refused(tmp_path, text)
    offset = text.index(bytes([0xE9]))
    assert problem == (f"line {line_of(DEFAULT_TEXT, 'name: default')}: not UTF-8 text (byte 0xe9 at offset "
                       f"{offset}); save the file as UTF-8")


def test_utf8_with_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFAULT_TEXT.encode("utf-8"))
    assert load_profile(path).name == "default"


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a: " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_file_gets_one_clear_line(tmp_path, nested):
    (problem,) = load_refused(tmp_path, DEFAULT_TEXT + f"extra: {nested}\n")
    assert problem == f"line {DEFAULT_TEXT.count(chr(10)) + 1}: nested deeper than 16 levels: not a profile " \
                      "(a profile nests 3 levels)"


def test_oversized_file_is_refused_before_parsing(tmp_path):
    from fescontrol.core.profile_yaml import MAX_PROFILE_BYTES
    (problem,) = load_refused(tmp_path, DEFAULT_TEXT + "#" * MAX_PROFILE_BYTES + "\n")
    assert problem == f"larger than {MAX_PROFILE_BYTES} bytes: too large for a profile"


@pytest.mark.parametrize("old, new, field, shown, expect", [
    ("  channel: 1 ", "  channel: yes ", "stimulation.channel", "'yes'", "a whole number is needed"),
    ("    debounce_ms: 30 ", "    debounce_ms: yes ", "trigger.heel.debounce_ms", "'yes'", "a whole number"),
    ("  max_stim_ms: 1500 ", "  max_stim_ms: 25:00 ", "envelope.max_stim_ms", "'25:00'", "no base-60"),
    ("  amplitude_ma: 30 ", "  amplitude_ma: 0x1e ", "stimulation.amplitude_ma", "'0x1e'", "write it in decimal"),
    ("  amplitude_ma: 30 ", "  amplitude_ma: '30' ", "stimulation.amplitude_ma", "'30'", "without quotes"),
    ("  amplitude_ma: 30 ", "  amplitude_ma: true ", "stimulation.amplitude_ma", "True", "not a true/false"),
    ("  amplitude_ma: 30 ", "  amplitude_ma: on ", "stimulation.amplitude_ma", "'on'", "a number is needed"),
    ("  amplitude_ma: 30 ", "  amplitude_ma: .nan ", "stimulation.amplitude_ma", "nan", "a finite number"),
    ("  pulse_width_us: 300 ", "  pulse_width_us: 300.5 ", "stimulation.pulse_width_us", "300.5", "whole number"),
    ("  stale_ms: 100 ", "  stale_ms: 1_00 ", "device.stale_ms", "'1_00'", "a whole number"),
])
def test_loose_values_are_refused_naming_field_value_and_allowed(tmp_path, old, new, field, shown, expect):
    problems = load_refused(tmp_path, default_text_with(old, new))
    (problem,) = [p for p in problems if p.startswith(field)]
    assert problem.startswith(f"{field} = {shown}: ")
    assert expect in problem
    assert "allowed" in problem


def test_whole_numbers_are_fine_where_decimals_go(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(default_text_with("  frequency_hz: 40 ", "  frequency_hz: 40.0 "))
    assert load_profile(path).stimulation.frequency_hz == 40.0
    assert load_profile(bundled_profile_path("default")).stimulation.amplitude_ma == 30.0


@pytest.mark.parametrize("path, value", [
    (("stimulation", "amplitude_ma"), True), (("stimulation", "channel"), True),
    (("stimulation", "pulse_width_us"), "300"), (("envelope", "ramp_up_ms"), 100.0),
    (("schema_version",), True), (("schema_version",), 1.0),
])
def test_json_and_live_changes_are_just_as_strict(path, value):
    """The live page and the session log hand dicts from JSON: ``true`` is not 1 mA."""
    data = base_dict()
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    (problem,) = refused(data)
    assert problem.startswith(".".join(path) + f" = {value!r}: ")


def test_missing_envelope_section_is_refused_saying_what_to_add(tmp_path):
    start = DEFAULT_TEXT.index("envelope:")
    end = DEFAULT_TEXT.index("trigger:")
    (problem,) = load_refused(tmp_path, DEFAULT_TEXT[:start] + DEFAULT_TEXT[end:])
    assert problem == ("envelope: missing (required section): add the burst shape, e.g. `envelope: "
                       "{ramp_up_ms: 100, ramp_down_ms: 150, extension_ms: 150, max_stim_ms: 1500}` "
                       "(the values of configs/default.yaml)")


@pytest.mark.parametrize("field, value", [("ramp_up_ms", 100), ("ramp_down_ms", 150),
                                          ("extension_ms", 150), ("max_stim_ms", 1500)])
def test_missing_envelope_time_is_refused_with_the_default_yaml_value(field, value):
    data = base_dict()
    del data["envelope"][field]
    assert refused(data) == [f"envelope.{field}: missing (required field): e.g. {field}: {value} "
                             "as in configs/default.yaml"]
    assert load_profile(bundled_profile_path("default")).envelope.model_dump()[field] == value


def test_every_default_left_in_the_models_equals_default_yaml():
    """A section or field a profile may leave out gets what configs/default.yaml says, never a
    different built-in value (the envelope's built-in 100/100 ms used to differ from its 150/150)."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined
    written = yaml.safe_load(DEFAULT_TEXT)
    used = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    checked = 0

    def walk(model: type[BaseModel], data: dict, where: str):
        nonlocal checked
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, data.get(name, {}), f"{where}{name}.")
                continue
            if info.default is PydanticUndefined or name not in data or name in ("name", "patient_id"):
                continue
            default = info.default.value if isinstance(info.default, enum.Enum) else info.default
            assert default == data[name], f"{where}{name}: built-in default {default!r}, default.yaml {data[name]!r}"
            checked += 1

    walk(Profile, {k: used[k] for k in written}, "")
    assert checked > 30


def test_asymmetric_waveform_is_refused_with_the_reason():
    data = base_dict()
    data["stimulation"]["waveform"] = "asymmetric_biphasic"
    (problem,) = refused(data)
    assert problem.startswith("stimulation.waveform = 'asymmetric_biphasic': not supported: the RehaStim2")
    assert "symmetric biphasic" in problem


def test_tilt_mounting_other_than_foot_is_refused_with_the_reason():
    data = load_profile(bundled_profile_path("walkaide_tilt")).model_dump(mode="json")
    data["trigger"]["tilt"]["mounting"] = "shank"
    (problem,) = refused(data)
    assert problem.startswith("trigger.tilt.mounting = 'shank': not supported: the tilt detector")
    assert load_profile(bundled_profile_path("walkaide_tilt")).trigger.tilt.mounting == "foot"


def test_long_values_are_cut_short_in_messages():
    data = base_dict()
    data["name"] = ["x" * 50] * 1000
    (problem,) = refused(data)
    assert len(problem) < 200


def test_profile_save_reads_strictly(tmp_path):
    text = default_text_with("  amplitude_ma: 30 ", "  amplitude_ma: 30\n  amplitude_ma: 95 ")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["profile", "save", str(path), "--by", "A. Orth", "--note", "n",
                                       "--patient", "P1", "--store", str(tmp_path / "store")])
    assert result.exit_code != 0, result.output
    assert "duplicate key 'amplitude_ma'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "store" / "P1").exists() or not list((tmp_path / "store" / "P1").glob("*.yaml"))
