#!/usr/bin/env bash
# Pack what a GPU run on a bare, offline machine needs into .devcarry/ (ignored by git):
#   .devcarry/whl/   wheels of the five datanas packages (built from this checkout) and the pure-Python
#                    mmseg stack that such images usually lack (mmsegmentation, mmengine, mmcv-lite and
#                    their small dependencies)
#   .devcarry/data/  a CIFAR-10 subset zip (2,000 training images per class + the whole test split),
#                    the ISBI-2012 zip and the MNIST test idx files, copied from ../shared/data
# On the GPU machine (Python 3.12 with torch, timm, scikit-learn already there):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl
#   export PYTHONPATH=/tmp/site
# Usage: tools/device_bundle.sh [SHARED_DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PY=${PY:-.venv/bin/python}
OUT=.devcarry
grep -qxF "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >> .git/info/exclude
rm -rf "$OUT/whl" && mkdir -p "$OUT/whl" "$OUT/data"
"$PY" tools/check_dists.py --build-only --dist "$OUT/dist" >/dev/null
cp "$OUT"/dist/*.whl "$OUT/whl/"
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$OUT/whl" \
    mmsegmentation==1.2.2 mmengine==0.10.7 mmcv-lite==2.1.0 prettytable wcwidth addict termcolor yapf platformdirs
if [ -f "$DATA/cifar10/cifar10-jpeg.zip" ] && [ ! -f "$OUT/data/cifar10-sub.zip" ]; then
    "$PY" - "$DATA/cifar10/cifar10-jpeg.zip" "$OUT/data/cifar10-sub.zip" <<'EOF'
import sys
import zipfile

src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst + ".tmp", "w", zipfile.ZIP_STORED) as zout:
    for info in zin.infolist():
        parts = info.filename.split("/")
        if info.is_dir() or parts[0] == "test" or (parts[0] == "train" and int(parts[-1].split(".")[0]) < 2000):
            zout.writestr(info, zin.read(info))
import os

os.replace(dst + ".tmp", dst)
EOF
fi
[ -f "$DATA/isbi2012/membrane_train.zip" ] && mkdir -p "$OUT/data/isbi2012" && cp -u "$DATA/isbi2012/membrane_train.zip" "$OUT/data/isbi2012/"
[ -d "$DATA/mnist" ] && mkdir -p "$OUT/data/mnist" && cp -u "$DATA"/mnist/*.gz "$OUT/data/mnist/"
du -sh "$OUT/whl" "$OUT/data"
