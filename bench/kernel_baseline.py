"""Throughput of the one-source kernel against the hand-kept twins it replaced, in one run.

Builds the old kernel (``fescontrol/_kernel.pyx`` + ``_kernel_py.py`` of git revision REV)
into a temporary package with the same compiler flags, then times ``bench/throughput.py``'s
replay (the bundled PhysioNet walk through a full controller) with the old and the new
build, in alternating fresh processes, and prints medians and their ratio. It also checks
that old and new produce the same trace, events and deliveries on that stream.

    .venv/bin/python bench/kernel_baseline.py --rev 32f2f69 --runs 7             # 100 Hz
    .venv/bin/python bench/kernel_baseline.py --rev 32f2f69 --runs 7 --rate 1000 # 1 kHz
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = '''
from setuptools import setup, Extension
from Cython.Build import cythonize
ext = Extension("k1base._kernel", ["k1base/_kernel.pyx"],
                extra_compile_args=["-O2", "-ffp-contract=off"])
setup(name="k1base", packages=["k1base"],
      ext_modules=cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True))
'''


def build_baseline(rev: str, where: str) -> None:
    """The old twins of ``rev`` as the package ``k1base`` under ``where`` (compiled in place)."""
    pkg = os.path.join(where, "k1base")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in ("_kernel.pyx", "_kernel_py.py"):
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:fescontrol/{name}"], check=True,
                             capture_output=True, text=True).stdout
        src = re.sub(r"^from \.codes import", "from fescontrol.core.codes import", src, flags=re.M)
        src = re.sub(r"^from \.profile import", "from fescontrol.core.profile import", src, flags=re.M)
        src = re.sub(r"^from \._kernel_py import", "from k1base._kernel_py import", src, flags=re.M)
        src = re.sub(r"^from fescontrol\._kernel_py import", "from k1base._kernel_py import", src, flags=re.M)
        src = re.sub(r"^from drivers import", "from fescontrol.drivers import", src, flags=re.M)
        with open(os.path.join(pkg, name), "w") as f:
            f.write(src)
    with open(os.path.join(where, "setup.py"), "w") as f:
        f.write(SETUP)
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where, check=True,
                   env=env, capture_output=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert os.path.exists(os.path.join(pkg, f"_kernel{suffix}")), "baseline kernel did not build"


def use_baseline(where: str, implementation: str) -> None:
    """Make every new Controller use the old kernel (cython: CyKernel, python: PyKernel)."""
    sys.path.insert(0, where)
    from fescontrol.loop import controller
    if implementation == "cython":
        from k1base._kernel import CyKernel as old
    else:
        from k1base._kernel_py import PyKernel as old
    controller.make_kernel = lambda profile, implementation="auto", trace_capacity=0: old(profile, trace_capacity)


def one(which: str, where: str, implementation: str, samples: int, rate_hz: float) -> float:
    """Samples/s of one build (``new`` or ``old``) on the throughput stream, best of 3."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import throughput

    from fescontrol.loop import controller
    # the old twins cannot batch a ramp's deliveries (a82a514): both builds take the per-delivery path
    controller.Controller.BATCH_DELIVERIES = False
    if which == "old":
        use_baseline(where, implementation)
    data, n, _ = throughput.recorded_heel_stream(samples, None if rate_hz == 100.0 else rate_hz)
    return n / throughput.time_replay(data, implementation, rate_hz, repeats=3 if implementation == "cython" else 1)


def same_outputs(where: str, samples: int = 60_000) -> dict:
    """Trace, events and deliveries of old and new compiled kernels on the throughput stream."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import numpy as np
    import throughput
    from fescontrol.loop import controller as cmod
    from fescontrol.core.profile import bundled_profile_path, load_profile
    data, n, _ = throughput.recorded_heel_stream(samples)
    profile = load_profile(bundled_profile_path("default"))
    sys.path.insert(0, where)
    from k1base._kernel import CyKernel as old
    cmod.Controller.BATCH_DELIVERIES = False      # as in one(): the old twins cannot batch
    out = {}
    new_make = cmod.make_kernel
    for which, make in (("new", new_make),
                        ("old", lambda profile, implementation="auto", trace_capacity=0: old(profile, trace_capacity))):
        cmod.make_kernel = make
        c = cmod.Controller(profile, implementation="cython", trace_capacity=4096)
        parts = cmod.TraceCollector()
        c.trace_sink = parts
        c.start()
        c.feed(data)
        c.finish()
        out[which] = (parts.arrays(), c.events, c.supervisor.deliveries,
                      [(f.reason, f.t_us) for f in c.supervisor.faults])
    cmod.make_kernel = new_make
    (tn, en, dn, fn), (to, eo, do, fo) = out["new"], out["old"]
    fields = {k: bool(np.array_equal(tn[k], to[k])) for k in tn}
    return {"samples": n, "trace_fields_equal": fields, "events_equal": en == eo,
            "deliveries_equal": dn == do, "faults_equal": fn == fo, "events": len(en)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="32f2f69", help="git revision with the old twins (default: 32f2f69)")
    ap.add_argument("--runs", type=int, default=7, help="alternating runs per build (default 7)")
    ap.add_argument("--samples", type=int, default=400_000, help="samples per compiled replay")
    ap.add_argument("--rate", type=float, default=100.0,
                    help="sample rate of the stream, Hz (100: the recording's own; make bench also uses 1000)")
    ap.add_argument("--python-samples", type=int, default=20_000, help="samples per interpreted replay (0: skip)")
    ap.add_argument("--one", choices=["new", "old"], help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="cython", help=argparse.SUPPRESS)
    ap.add_argument("--where", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(one(args.one, args.where, args.impl, args.samples, args.rate))
        return
    where = tempfile.mkdtemp(prefix="kernel-baseline-")
    try:
        build_baseline(args.rev, where)
        result = {"rev": args.rev, "runs": args.runs, "rate_hz": args.rate, "check": same_outputs(where)}
        for impl, samples in (("cython", args.samples), ("python", args.python_samples)):
            if not samples:
                continue
            runs = {"new": [], "old": []}
            for i in range(args.runs if impl == "cython" else max(3, args.runs // 2)):
                for which in (("new", "old") if i % 2 == 0 else ("old", "new")):
                    out = subprocess.run([sys.executable, __file__, "--one", which, "--where", where,
                                          "--impl", impl, "--samples", str(samples), "--rate", str(args.rate)],
                                         check=True, capture_output=True, text=True).stdout
                    runs[which].append(float(out.split()[-1]))
            new, old = statistics.median(runs["new"]), statistics.median(runs["old"])
            result[impl] = {"samples": samples, "new_samples_per_s": runs["new"], "old_samples_per_s": runs["old"],
                            "new_median": new, "old_median": old, "ratio_new_over_old": new / old}
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
