"""Patient parameters and the seeded population they are drawn from (docs/patient-model.md).

A population file (``sim/patients/drop_foot.yaml``) holds, for every physical parameter of
:class:`PatientParams`, a ``[low, high]`` range; :func:`draw_population` draws patients
uniformly from those ranges with ``numpy.random.default_rng(seed)``, so a seed names the same
patients on every machine. The file is read with the device's strict YAML reader
(:mod:`fescontrol.core.profile_yaml`) and validated by :class:`PopulationSpec`: unknown keys,
missing keys, reversed ranges and non-finite numbers are refused with one line naming them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fescontrol.core.profile_yaml import YamlRefused, parse_profile_text

PATIENTS_DIR = Path(__file__).resolve().parent.parent / "patients"
BUNDLED_POPULATIONS = {"drop-foot": PATIENTS_DIR / "drop_foot.yaml"}


class PatientModelError(ValueError):
    """A population file or a ``--patient-model`` spec is not valid; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PatientParams(_Strict):
    """One patient. Units in the names; angles in degrees, ankle dorsiflexion positive."""

    threshold_charge_nc: float = Field(gt=0)
    """Charge per pulse (current × pulse width) at which the tibialis anterior starts to be
    recruited (Veltink et al. 1992 recruitment threshold)."""
    saturation_charge_nc: float = Field(gt=0)
    """Charge per pulse at which recruitment is complete."""
    fusion_frequency_hz: float = Field(gt=0)
    """Frequency at which the twitch summation factor is 1/2 (force-frequency relation)."""
    max_torque_nm: float = Field(gt=0)
    """Dorsiflexion torque of the fully recruited, unfatigued muscle at full fusion."""
    electromechanical_delay_ms: float = Field(ge=0)
    activation_time_constant_ms: float = Field(gt=0)
    deactivation_time_constant_ms: float = Field(gt=0)
    fatigue_time_constant_s: float = Field(gt=0)
    """Time constant of the fitness decay under full activation (Riener et al. 1996)."""
    recovery_time_constant_s: float = Field(gt=0)
    """Time constant of the fitness recovery at rest."""
    min_fitness: float = Field(ge=0, lt=1)
    """Fitness a fully fatigued muscle keeps (fraction of the unfatigued force)."""
    foot_mass_kg: float = Field(gt=0)
    foot_com_distance_m: float = Field(gt=0)
    """Distance from the ankle axis to the foot's centre of mass, along the foot."""
    foot_inertia_kgm2: float = Field(gt=0)
    """Moment of inertia of the foot about the ankle axis."""
    passive_stiffness_nm_per_rad: float = Field(gt=0)
    passive_damping_nms_per_rad: float = Field(ge=0)
    passive_rest_angle_deg: float
    """Ankle angle at which the passive elastic torque is zero (negative: plantarflexed)."""

    @model_validator(mode="after")
    def _saturation_above_threshold(self):
        if not self.saturation_charge_nc > self.threshold_charge_nc:
            raise ValueError(f"saturation_charge_nc ({self.saturation_charge_nc:g}) must be above "
                             f"threshold_charge_nc ({self.threshold_charge_nc:g})")
        return self


RANGED_FIELDS = tuple(PatientParams.model_fields)


class Range(_Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"range [{self.low:g}, {self.high:g}] is reversed (high below low)")
        return self


class GaitLimits(_Strict):
    """When a swing drags the toes (docs/patient-model.md, "Toe drag").

    The ankle's path is the recording's; with the foot pitched ``θ`` instead of the recorded
    ``θ_rec`` the toe tip is ``toe_length_m · (sin θ_rec − sin θ)`` lower. A swing whose toes,
    from mid-swing to heel strike, are lower than recorded by more than the normal minimum
    toe clearance touches the ground: a toe-drag stride."""

    toe_length_m: float = Field(gt=0, le=0.4)
    min_toe_clearance_m: float = Field(gt=0, le=0.1)

    def clearance_angle_deg(self, recorded_pitch_deg: float) -> float:
        """Lowest foot pitch (deg) that clears the ground where the unimpaired foot was at
        ``recorded_pitch_deg``."""
        s = math.sin(math.radians(recorded_pitch_deg)) - self.min_toe_clearance_m / self.toe_length_m
        return math.degrees(math.asin(max(-1.0, s)))


class PopulationSpec(_Strict):
    """A population file: name, seed, size, gait limits and one range per parameter."""

    schema_version: int = Field(ge=1, le=1)
    name: str = Field(min_length=1)
    seed: int = Field(ge=0)
    n_patients: int = Field(ge=1, le=1000)
    gait: GaitLimits
    ranges: dict[str, Range]

    @field_validator("ranges")
    @classmethod
    def _all_ranges(cls, ranges):
        unknown = sorted(set(ranges) - set(RANGED_FIELDS))
        missing = [f for f in RANGED_FIELDS if f not in ranges]
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(RANGED_FIELDS)}")
        if missing:
            raise ValueError(f"missing range(s) for {', '.join(missing)}")
        return ranges


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def load_population_spec(path: str | Path) -> PopulationSpec:
    """Read and validate a population file. PatientModelError (one line) when it is not valid."""
    path = Path(path)
    try:
        data = parse_profile_text(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PatientModelError(f"{path}: cannot read ({err.strerror or err})") from None
    except YamlRefused as err:
        raise PatientModelError(f"{path}: {err}") from None
    except Exception as err:    # yaml.YAMLError: not YAML at all
        raise PatientModelError(f"{path}: not YAML ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise PatientModelError(f"{path}: a population file is a mapping of keys, got {type(data).__name__}")
    try:
        return PopulationSpec.model_validate(data)
    except ValidationError as err:
        raise PatientModelError(f"{path}: {_one_line(err)}") from None


def draw_population(spec: PopulationSpec, seed: int | None = None, n: int | None = None) -> list[PatientParams]:
    """``n`` patients (default ``spec.n_patients``) drawn uniformly from the ranges with
    ``default_rng(seed)`` (default ``spec.seed``). The same seed gives the same patients.
    A draw whose saturation is not above its threshold is redrawn (bounded; PatientModelError
    if the ranges cannot give a valid patient)."""
    rng = np.random.default_rng(spec.seed if seed is None else seed)
    count = spec.n_patients if n is None else n
    patients = []
    for _ in range(count):
        for _attempt in range(100):
            values = {f: float(rng.uniform(spec.ranges[f].low, spec.ranges[f].high)) for f in RANGED_FIELDS}
            if values["saturation_charge_nc"] > values["threshold_charge_nc"]:
                patients.append(PatientParams(**values))
                break
        else:
            raise PatientModelError(f"population {spec.name!r}: the ranges give no saturation_charge_nc "
                                    "above threshold_charge_nc")
    return patients


@dataclass(frozen=True)
class PatientModelChoice:
    """What ``--patient-model`` asked for: a population file, a seed (None: the file's) and
    one patient of the drawn set (None: all of them)."""

    path: Path
    seed: int | None = None
    patient: int | None = None


def parse_patient_model(text: str) -> PatientModelChoice:
    """``drop-foot``, ``drop-foot:seed=N``, ``drop-foot:seed=N:patient=K`` or a population
    ``.yaml`` path with the same options. PatientModelError names what is allowed otherwise."""
    allowed = ("allowed: drop-foot or a population .yaml file, optionally followed by "
               "':seed=N' and/or ':patient=K' (e.g. 'drop-foot:seed=3:patient=0')")
    name, *options = text.split(":")
    values: dict[str, int] = {}
    for opt in options:
        key, eq, value = opt.partition("=")
        if key not in ("seed", "patient") or not eq:
            raise PatientModelError(f"--patient-model {text!r}: unknown option {opt!r}; {allowed}")
        if key in values:
            raise PatientModelError(f"--patient-model {text!r}: option {key!r} given twice")
        if not value.isdigit():
            raise PatientModelError(f"--patient-model {text!r}: {key} must be a non-negative integer, got {value!r}")
        values[key] = int(value)
    if name in BUNDLED_POPULATIONS:
        path = BUNDLED_POPULATIONS[name]
    elif Path(name).suffix in (".yaml", ".yml"):
        path = Path(name)
        if not path.exists():
            raise PatientModelError(f"--patient-model {text!r}: file {path} does not exist")
    else:
        raise PatientModelError(f"--patient-model {text!r}: unknown model {name!r}; {allowed}")
    return PatientModelChoice(path, values.get("seed"), values.get("patient"))
