"""NCC search per backend vs cv2.matchTemplate, one thread each, timed as the miner uses it.

Like with like: uint8 frames against cv2.matchTemplate on uint8, float32 frames against
cv2.matchTemplate on float32 (every backend has a row for each). float32 frames come two ways:
the uint8 frames converted (whole numbers 0..255, which the C++ core searches as bytes) and the
same divided by 255 (fractions in 0..1, the float path with its float64 window sums).

One template is cut once and searched in 10 neighbour frames (what the rules do with each
detection); the figure is time per search. Templates (h x w) 32x32, 64x64, 128x128 and
200x300, region = template + 200 px in each dimension. Frames are real (pets09) when
../shared/data is present, else a synthetic texture.

Also, with numba among the backends: numba's cold compile (a child process with an empty
NUMBA_CACHE_DIR runs ``numba_backend.warm_up()``: wall and CPU seconds), then a second child
loading the same cache (``--no-cold-compile`` skips it).

    python bench/bench_ncc.py [--backends cpp,numba,numpy] [--no-cold-compile] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

import flickermine
from flickermine import _core

from _common import SHARED_DATA, best_time, print_table, write_json

SIZES = [(32, 32), (64, 64), (128, 128), (200, 300)]
NEIGHBOURS = 10
#: (tag, name, the frames of that kind from uint8 frames)
KINDS = [
    ("u8", "uint8", lambda frame: frame),
    ("f32", "float32", lambda frame: frame.astype(np.float32)),
    ("f01", "float32 0-1", lambda frame: (frame / np.float32(255)).astype(np.float32)),
]


def load_frames() -> list[np.ndarray]:
    video = SHARED_DATA / "pets09-s2l1" / "video.avi"
    if video.exists():
        cap = cv2.VideoCapture(str(video))
        frames = []
        while len(frames) < NEIGHBOURS + 1:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if len(frames) == NEIGHBOURS + 1:
            return frames
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((600, 800)).astype(np.float32), (0, 0), 2.0)
    base = ((base - base.min()) / (base.max() - base.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(base[i : i + 576, i : i + 768]) for i in range(NEIGHBOURS + 1)]


COMPILE_CHILD = r"""
import json, os, resource, time
start = time.perf_counter()
from flickermine.mining._backends import numba_backend
cold = numba_backend.cache_is_cold()
numba_backend.warm_up(force=True, quiet=True)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cold": cold, "wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def numba_cold_compile() -> dict:
    """Seconds to compile the numba backend from an empty cache, and to load it afterwards."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = {}
        for name in ("cold", "warm"):
            load = [round(x, 2) for x in os.getloadavg()]
            out = subprocess.run([sys.executable, "-c", COMPILE_CHILD], capture_output=True, text=True, env=env, check=True)
            runs[name] = {**json.loads(out.stdout.strip().splitlines()[-1]), "load_average_before": load}
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="cpp,numba,numpy")
    parser.add_argument("--no-cold-compile", action="store_true", help="skip timing numba's compile from an empty cache")
    parser.add_argument("--json", help="output path (default bench/results/ncc.json)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:
        pass
    backends = [b for b in args.backends.split(",") if b in flickermine.available_backends()]

    load_start = [round(x, 2) for x in os.getloadavg()]
    frames_u8 = load_frames()
    center, neighbours_u8 = frames_u8[0], frames_u8[1:]
    results = []
    for h, w in SIZES:
        H, W = center.shape
        # Template in the middle of the frame; region = template + 100 px each side.
        tx1, ty1 = (W - w) // 2, (H - h) // 2
        box = np.array([[tx1, ty1, tx1 + w, ty1 + h]], dtype=np.int64)
        region = np.array([[tx1 - 100, ty1 - 100, tx1 + w + 100, ty1 + h + 100]], dtype=np.int64)
        rx1, ry1, rx2, ry2 = region[0]
        row = {"template": f"{h}x{w}", "region": f"{ry2 - ry1}x{rx2 - rx1}"}
        for tag, _, convert in KINDS:
            c = convert(center)
            ns = [convert(n) for n in neighbours_u8]
            crops = [np.ascontiguousarray(n[ry1:ry2, rx1:rx2]) for n in ns]
            templ = np.ascontiguousarray(c[ty1 : ty1 + h, tx1 : tx1 + w])

            def opencv():
                for crop in crops:
                    cv2.minMaxLoc(cv2.matchTemplate(crop, templ, cv2.TM_CCOEFF_NORMED))

            row[f"opencv_{tag}_ms"] = best_time(opencv) / NEIGHBOURS * 1e3
            for name in backends:
                if name == "cpp":

                    def run():
                        _core.ncc_search_frames(c, box, ns, region)

                elif hasattr(module := flickermine.get_backend(name), "ncc_search_frames"):
                    # The same call as cpp's: one template, every frame, in one compiled call.

                    def run(module=module):
                        module.ncc_search_frames(c, box, ns, region)

                else:

                    def run(module=module):
                        for n in ns:
                            module.ncc_search_batch(c, box, n, region)

                repeats = 2 if name == "numpy" else 7
                row[f"{name}_{tag}_ms"] = best_time(run, repeats=repeats) / NEIGHBOURS * 1e3
        for tag, _, _ in KINDS:  # like with like: each backend against cv2.matchTemplate on the same dtype
            for name in backends:
                row[f"{name}_{tag}_speedup_vs_opencv"] = row[f"opencv_{tag}_ms"] / row[f"{name}_{tag}_ms"]
            if "numba" in backends and "cpp" in backends:
                row[f"numba_over_cpp_{tag}"] = row[f"numba_{tag}_ms"] / row[f"cpp_{tag}_ms"]
        results.append(row)

    headers = ["template", "region", "frames", "cv2.matchTemplate"]
    for name in backends:
        headers += [name, f"{name} speedup"]
    if "numba" in backends and "cpp" in backends:
        headers.append("numba/cpp")
    table = []
    for r in results:
        for tag, dtype_name, _ in KINDS:
            line = [r["template"], r["region"], dtype_name, f"{r[f'opencv_{tag}_ms']:.3f}"]
            for name in backends:
                line += [f"{r[f'{name}_{tag}_ms']:.3f}", f"{r[f'{name}_{tag}_speedup_vs_opencv']:.2f}x"]
            if "numba" in backends and "cpp" in backends:
                line.append(f"{r[f'numba_over_cpp_{tag}']:.2f}x")
            table.append(line)
    isa, isas = _core._ncc_isa()
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"NCC search, ms per search (one template in {NEIGHBOURS} frames), one thread, best of repeats;")
    print("speedup = cv2.matchTemplate (TM_CCOEFF_NORMED + minMaxLoc) on frames of the same dtype / the backend")
    print(f"cpp kernels: {isa} (this machine runs: {', '.join(isas)}; FLICKERMINE_NCC_ISA caps it); load average {load_start} -> {load}, {os.cpu_count()} CPUs")
    print_table(headers, table)
    if "cpp" in backends:
        for tag, dtype_name, _ in KINDS:
            ok = all(r[f"cpp_{tag}_speedup_vs_opencv"] >= 3 for r in results)
            print(f"target cpp {dtype_name} >= 3x cv2.matchTemplate on the same frames at every size: {'met' if ok else 'NOT met'}")
        if "numba" in backends:
            ok_numba = all(r[f"numba_over_cpp_{tag}"] <= 2 for r in results for tag, _, _ in KINDS)
            print(f"target numba within 2x of cpp on every kind of frame: {'met' if ok_numba else 'NOT met'}")
    compile_times = None
    if "numba" in backends and not args.no_cold_compile:
        compile_times = numba_cold_compile()
        cold, warm = compile_times["cold"], compile_times["warm"]
        print(f"\nnumba backend from an empty NUMBA_CACHE_DIR: {cold['wall_s']:.1f} s wall, {cold['cpu_s']:.1f} s CPU "
              f"(load average {cold['load_average_before']}); a second process loading that cache: {warm['wall_s']:.1f} s")
    write_json(
        "ncc",
        {"neighbours": NEIGHBOURS, "cpp_kernels": isa, "timing": "best of repeats, one thread",
         "comparison": "each backend against cv2.matchTemplate on frames of the same dtype (uint8 vs uint8, float32 vs float32)",
         "kinds": {tag: name for tag, name, _ in KINDS},
         "kinds_note": "f32: the uint8 frames as float32 (whole numbers 0..255); f01: the same / 255 (fractions in 0..1)",
         "load_average": {"start": load_start, "end": load, "cpus": os.cpu_count()}, "results": results,
         "numba_compile": compile_times},
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
