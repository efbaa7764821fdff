#!/usr/bin/env bash
# GPU call 3: six NB201 EGS searches (supernet N=2) + retraining, random cells reused from call 1
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcarry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
W=/tmp/w; mkdir -p $W
COMMON="--data imagezip --data-dir .devcarry/data/cifar10-sub.zip --max-per-class 1000 --space nb201 --search-C 16 --search-layers 2 --search-batch-size 96 --search-epochs 30 --arch-warmup-epochs 10 --train-epochs 25 --C 16 --layers 5 --batch-size 128 --threads 1 --seed 0 --device cuda --random 10"
for v in "P1 --samples 4 --a-lr 3e-3 --search-seed 0" "P2 --samples 4 --a-lr 3e-3 --search-seed 1" "P3 --samples 4 --a-lr 3e-3 --search-seed 2" "P4 --samples 2 --a-lr 1e-2" "P5 --samples 4 --a-lr 1e-2" "P6 --samples 2 --a-lr 3e-3"; do
  set -- $v; n=$1; shift
  mkdir -p $W/$n/cells; cp .devcarry/prev/A_cells/*.json $W/$n/cells/
  timeout ${T:-540} python3 -m datanas_vision.compare $COMMON "$@" --out $W/$n > $W/$n.log 2>&1 &
done
wait
for n in P1 P2 P3 P4 P5 P6; do echo "== $n"; grep -h "Searched cell\|Random cells" $W/$n/compare.md 2>/dev/null || tail -2 $W/$n.log; cat $W/$n/search/nb201.txt 2>/dev/null; done
cd /tmp && tar czf $OUT/w3.tgz --exclude='*.pt' --exclude='checkpoints' w
