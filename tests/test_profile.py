"""Profiles: bundled ones valid; every bad value refused with field, value and range."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from fescontrol import limits
from fescontrol.cli import main
from fescontrol.profile import (Profile, ProfileError, bundled_profile_path, load_profile,
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
