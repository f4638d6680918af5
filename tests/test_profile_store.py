"""Profile history: versions per patient, who/what/when/why, diff, rollback, refusals."""
from __future__ import annotations

import json
import threading

import pytest
import yaml
from click.testing import CliRunner

from fescontrol.cli import main
from fescontrol.core.profile import ProfileError, bundled_profile_path, load_profile, profile_from_dict
from fescontrol.tools.profile_store import HISTORY_FILE, ProfileStore, StoreError


def _default_heel(field: str):
    """The bundled default's value (the defaults are tuned elsewhere; the tests follow them)."""
    return getattr(load_profile(bundled_profile_path("default")).trigger.heel, field)


def _profile(patient="P001", **heel):
    data = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    data["patient_id"] = patient
    data["trigger"]["heel"].update(heel)
    return profile_from_dict(data)


def test_versions_history_diff_and_rollback(tmp_path):
    store = ProfileStore(tmp_path)
    v1 = store.save(_profile(), by="Ann", note="first fitting")
    d0 = _default_heel("debounce_ms")
    d1 = 20 if d0 != 20 else 25
    v2 = store.save(_profile(debounce_ms=d1), by="Bob", note="fewer late onsets")
    assert (v1.version, v2.version) == (1, 2) and v2.based_on == 1
    assert [(c.path, c.old, c.new) for c in v2.changes] == [("trigger.heel.debounce_ms", d0, d1)]
    hist = store.history("P001")
    assert [(v.by, v.note, v.action) for v in hist] == [("Ann", "first fitting", "save"),
                                                        ("Bob", "fewer late onsets", "save")]
    assert all(v.at.endswith("Z") and store.intact(v) for v in hist)
    # the files are plain YAML profiles that the validator accepts
    for v in hist:
        assert load_profile(tmp_path / "P001" / v.file).patient_id == "P001"
    assert store.load("P001", 1).trigger.heel.debounce_ms == d0
    assert store.load("P001").trigger.heel.debounce_ms == d1
    v3 = store.rollback("P001", 1, by="Ann", note="patient preferred it")
    assert v3.version == 3 and v3.action == "rollback"
    assert [(c.path, c.old, c.new) for c in v3.changes] == [("trigger.heel.debounce_ms", d1, d0)]
    assert store.load("P001").model_dump() == store.load("P001", 1).model_dump()
    assert len(store.history("P001")) == 3          # append-only: nothing rewritten
    lines = (tmp_path / "P001" / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [1, 2, 3]


def test_a_change_the_validator_rejects_is_never_stored(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(_profile(), by="Ann", note="first")
    before = sorted(p.name for p in (tmp_path / "P001").iterdir())
    bad = _profile().model_dump(mode="json")
    bad["trigger"]["heel"]["off_fraction"] = 0.3          # above on_fraction: no hysteresis
    with pytest.raises(ProfileError, match="hysteresis"):
        store.save(bad, by="Bob", note="typo")
    bad = _profile().model_dump(mode="json")
    bad["stimulation"]["amplitude_ma"] = 150.0            # above the hard cap
    with pytest.raises(ProfileError, match="amplitude_ma"):
        store.save(bad, by="Bob", note="too much")
    assert sorted(p.name for p in (tmp_path / "P001").iterdir()) == before
    assert len(store.history("P001")) == 1


def test_refusals_without_author_unchanged_or_bad_patient(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(_profile(), by="Ann", note="first")
    with pytest.raises(StoreError, match="no change"):
        store.save(_profile(), by="Ann", note="again")
    with pytest.raises(StoreError, match="who made the change"):
        store.save(_profile(debounce_ms=_default_heel("debounce_ms") + 5), by=" ", note="x")
    with pytest.raises(StoreError, match="patient id"):
        store.save(_profile(patient=None), by="Ann", note="x", patient_id="../evil")
    with pytest.raises(StoreError, match="belongs to patient"):
        store.save(_profile(), by="Ann", note="x", patient_id="P002")
    with pytest.raises(StoreError, match="no version 9"):
        store.load("P001", 9)


def test_a_file_changed_outside_the_store_is_reported(tmp_path):
    store = ProfileStore(tmp_path)
    v = store.save(_profile(), by="Ann", note="first")
    path = tmp_path / "P001" / v.file
    d0 = _default_heel("debounce_ms")
    text = path.read_text()
    assert f"debounce_ms: {d0}" in text
    path.write_text(text.replace(f"debounce_ms: {d0}", f"debounce_ms: {d0 + 1}"))
    assert not store.intact(store.history("P001")[0])
    out = CliRunner().invoke(main, ["profile", "history", "--store", str(tmp_path)]).output
    assert "changed outside the store" in out


def test_concurrent_saves_get_distinct_versions(tmp_path):
    store = ProfileStore(tmp_path)
    store.save(_profile(), by="Ann", note="first")
    errors = []

    def save(i):
        try:
            ProfileStore(tmp_path).save(_profile(debounce_ms=40 + i), by=f"user{i}", note="parallel")
        except Exception as err:  # noqa: BLE001 - collected and checked below
            errors.append(err)
    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = [v.version for v in store.history("P001")]
    assert versions == list(range(1, 10))
    assert len({v.file for v in store.history("P001")}) == 9


def test_cli_save_history_diff_rollback_show(tmp_path):
    store = tmp_path / "store"
    good = tmp_path / "p.yaml"
    good.write_text(yaml.safe_dump(_profile().model_dump(mode="json")))
    changed = tmp_path / "p2.yaml"
    off0, on0 = _default_heel("off_fraction"), _default_heel("on_fraction")
    off1, on1 = (0.06 if off0 != 0.06 else 0.07), (0.3 if on0 != 0.3 else 0.35)
    changed.write_text(yaml.safe_dump(_profile(off_fraction=off1, on_fraction=on1).model_dump(mode="json")))
    bad = tmp_path / "bad.yaml"
    bad_data = _profile().model_dump(mode="json")
    bad_data["trigger"]["heel"]["debounce_ms"] = 500
    bad.write_text(yaml.safe_dump(bad_data))
    run = CliRunner().invoke
    s = ["--store", str(store)]
    assert run(main, ["profile", "save", str(good), "--by", "Ann", "--note", "first", *s]).exit_code == 0
    res = run(main, ["profile", "save", str(changed), "--by", "Bob", "--note", "earlier onset", *s])
    assert res.exit_code == 0 and "P001@2" in res.output
    res = run(main, ["profile", "save", str(bad), "--by", "Bob", "--note", "oops", *s])
    assert res.exit_code == 2 and "debounce_ms" in res.output and "nothing stored" in res.output
    hist = run(main, ["profile", "history", "--patient", "P001", *s]).output
    assert "P001@1" in hist and "P001@2" in hist and "P001@3" not in hist
    assert "by Bob" in hist and "earlier onset" in hist and f"trigger.heel.off_fraction: {off0} -> {off1}" in hist
    diff = run(main, ["profile", "diff", "1", "2", *s]).output
    assert f"trigger.heel.on_fraction: {on0} -> {on1}" in diff
    diff_file = run(main, ["profile", "diff", "P001@2", str(good), *s]).output
    assert f"trigger.heel.off_fraction: {off1} -> {off0}" in diff_file
    res = run(main, ["profile", "rollback", "1", "--by", "Ann", "--note", "back", *s])
    assert res.exit_code == 0 and "P001@3" in res.output
    shown = yaml.safe_load(run(main, ["profile", "show", "3", *s]).output)
    assert shown["trigger"]["heel"]["off_fraction"] == off0
    res = run(main, ["profile", "rollback", "7", "--by", "Ann", *s])
    assert res.exit_code == 2 and "no version 7" in res.output
