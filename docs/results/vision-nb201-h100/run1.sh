#!/usr/bin/env bash
# GPU call 1: gpu tests + NB201 vision compare (random cells + 4 EGS search variants)
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -c "import torch, timm, sklearn; print(torch.__version__, timm.__version__, torch.cuda.get_device_name())"
nproc
W=/tmp/w; mkdir -p $W
(python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="" packages/datanas-core/tests/test_gpu.py packages/datanas-vision/tests/test_gpu.py > $W/gpu_tests.log 2>&1; echo "gpu tests rc=$?" >> $W/gpu_tests.log) &
COMMON="--data imagezip --data-dir .devcarry/data/cifar10-sub.zip --max-per-class 1000 --space nb201 --search-C 16 --search-layers 5 --search-batch-size 96 --search-epochs 30 --arch-warmup-epochs 10 --train-epochs 25 --C 16 --layers 5 --batch-size 128 --threads 1 --seed 0 --device cuda"
timeout ${T:-470} python3 -m datanas_vision.compare $COMMON --random 10 --jobs 11 --out $W/A > $W/A.log 2>&1 &
timeout ${T:-470} python3 -m datanas_vision.compare $COMMON --random 0 --samples 4 --out $W/B > $W/B.log 2>&1 &
timeout ${T:-470} python3 -m datanas_vision.compare $COMMON --random 0 --a-lr 3e-3 --out $W/C > $W/C.log 2>&1 &
timeout ${T:-470} python3 -m datanas_vision.compare $COMMON --random 0 --executor exact --out $W/D > $W/D.log 2>&1 &
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > $W/smi.txt; uptime >> $W/smi.txt
wait
cat $W/gpu_tests.log | tail -5
for d in A B C D; do echo "== $d"; tail -3 $W/$d.log; ls $W/$d/search 2>/dev/null | head -3; python3 - $W/$d <<'PY'
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1], "cells").glob("*.json")):
    r = json.loads(f.read_text()); print(f.stem, round(r["top1"]*100, 2), r["params"], round(r["seconds"]))
g = pathlib.Path(sys.argv[1], "search", "nb201.txt")
print(g.read_text() if g.is_file() else "no search result")
PY
done
cat $W/smi.txt
cd /tmp && tar czf $OUT/w1.tgz --exclude='*.pt' --exclude='checkpoints' w
ls -la $OUT
