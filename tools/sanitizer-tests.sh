#!/usr/bin/env bash
# Build flickermine._core with AddressSanitizer + UBSan into a separate folder and run the C++
# parity and boundary tests against it; then with ThreadSanitizer, the rule threads' tests. Needs
# the test environment of the README's test command (.venv) and gcc's libasan and libtsan.
# Usage: bash tools/sanitizer-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SITE=build/asan-site
rm -rf "$SITE"
# The instrumented build reuses this environment (no isolation), so it needs the build backend.
"$PY" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12"
"$PY" -m pip install --quiet --no-deps --no-build-isolation --target "$SITE" \
  -C cmake.define.FLICKERMINE_SANITIZE=ON -C cmake.define.FLICKERMINE_CUDA=OFF -C build-dir=build/asan .
ASAN_LIB=$(gcc -print-file-name=libasan.so)
# libstdc++ is preloaded too: python is not linked against it, so without it ASan starts before
# libstdc++ is loaded, finds no real __cxa_throw to wrap, and aborts on the first C++ exception.
STDCXX_LIB=$(gcc -print-file-name=libstdc++.so)
export LD_PRELOAD="$ASAN_LIB $STDCXX_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$SITE"
# An editable install (pip install -e .) puts an import hook before sys.path that maps flickermine
# to the tree and its own _core; it stands aside for the build folders named in this variable.
SKBUILD_EDITABLE_SKIP=$(env -u PYTHONPATH "$PY" -c "import sys; print(':'.join(str(f.path) for f in sys.meta_path if type(f).__name__.startswith('ScikitBuild') and getattr(f, 'path', None)))")
export SKBUILD_EDITABLE_SKIP
# Make sure the instrumented module is the one under test.
"$PY" - <<'PYEOF'
import os, flickermine._core as core
assert os.path.abspath(core.__file__).startswith(os.environ["PYTHONPATH"]), core.__file__
print("sanitized core:", core.__file__)
PYEOF
# test_ncc_isa runs every vector code path of the kernels (baseline, AVX2, AVX-512) this CPU has;
# test_params_bounds runs the rules at int32 extremes (window, margin 2**31 - 1), misaligned float32
# frames and +-1e308 boxes.
"$PY" -m pytest -q -p no:cacheprovider tests/test_parity.py tests/test_ncc.py tests/test_api_errors.py tests/test_rules.py \
  tests/test_ncc_isa.py -k "cpp or core or ncc_isa" -o addopts="-ra --strict-markers"
"$PY" -m pytest -q -p no:cacheprovider tests/test_params_bounds.py tests/test_threads.py -o addopts="-ra --strict-markers"

# ThreadSanitizer on the rule threads (parallel.cpp and the rules that use it): a second build,
# the same import-hook bypass. TSan cannot follow a threaded process into fork(), so the fork
# test is left to the runs above.
TSAN_LIB=$(gcc -print-file-name=libtsan.so)
if [ ! -f "$TSAN_LIB" ]; then
  echo "no libtsan for gcc here: ThreadSanitizer run skipped" >&2
  exit 0
fi
TSAN_SITE=build/tsan-site
rm -rf "$TSAN_SITE"
"$PY" -m pip install --quiet --no-deps --no-build-isolation --target "$TSAN_SITE" \
  -C cmake.define.FLICKERMINE_TSAN=ON -C cmake.define.FLICKERMINE_CUDA=OFF -C build-dir=build/tsan .
export LD_PRELOAD="$TSAN_LIB $STDCXX_LIB" TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0
export PYTHONPATH="$PWD/$TSAN_SITE"
"$PY" -c "import os, flickermine._core as core; assert os.path.abspath(core.__file__).startswith(os.environ['PYTHONPATH']); print('tsan core:', core.__file__)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_threads.py -k "not forked" -o addopts="-ra --strict-markers"
