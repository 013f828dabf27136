#!/bin/bash
# GPU check for issue 22 (docs/gpu.md), one run of at most 8 minutes on a lent GPU through the workplace's device tool:
#   1. benchmark 1 at full width, batch 128, bf16: the loss module as eager / fused / compiled, each with and without
#      runtime.cuda_graph, against the plain step; 10 steps per timed sample, 30 samples: 95 % CI of each ratio;
#   2. SSD300 + module training fed by the data pipeline (generated VOC-sized JPEGs, fast augmentation) at 8 and 16
#      DataLoader workers, against the pipeline alone and the model alone; the per-image CPU costs on that machine;
#   3. one fig4 trial alone on the GPU (CIFAR-10 JPEG tree, full-width ResNet-18, schedule=paper_cifar10, learning
#      loss, seed 0) with runtime.cuda_graph=true and the module kind that step 1 measured fastest (eager or fused),
#      until its time is up: its first cycles (cycles.csv: train_s per cycle);
#   4. if a minute is left: the demo twice with runtime.deterministic=true, cuda_graph off and on: same CSVs?
# The GPU machine has torch, torchvision, scipy and pandas but no Hydra and no network. Prepare once, here:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/site
#   cp -r .venv/lib/python3.11/site-packages/{hydra,omegaconf,antlr4,defusedxml}* .gpu/site/
#   (cd <dir holding cifar10-jpg> && tar czf - cifar10-jpg) > .gpu/cifar10-jpg.tgz     # 20 MB
# and before each run `git rev-parse HEAD > .gpu/commit.txt`. Then call the device tool with the command
# `bash scripts/device_check_gpu.sh`, carry [".gpu"], timeout_s 540.
# Results: $OUT/gpu_<kind>.tgz holds outputs/reference/gpu_<kind>/ (unpack it at the repository root, write its
# README from summary.md, commit); $OUT/summary.md has the numbers. (The tool returns files at most two folders
# below $OUT, so the results folder travels packed.)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.gpu/site:$PWD AL_RUNNER_CACHE=/tmp/cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T0=$(date +%s); DEADLINE=$((T0 + 465))           # 8 minutes, less the packing at the end
el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
budget() { local left=$((DEADLINE - $(date +%s))); echo $(( left < $1 ? (left > 1 ? left : 1) : $1 )); }
PY=python3
KIND=$($PY -c "import re,torch; n=torch.cuda.get_device_name(); m=re.search(r'\b([A-Z]+[0-9]+[A-Za-z]*)\b', n.replace('NVIDIA','')); print((m.group(1) if m else 'gpu').lower())") || { echo "no CUDA device"; exit 1; }
RES=/tmp/res/outputs/reference/gpu_$KIND; mkdir -p "$RES"
{ nvidia-smi -L; $PY -c "import sys,torch,torchvision,hydra,omegaconf;print('python',sys.version.split()[0],'torch',torch.__version__,'torchvision',torchvision.__version__,'hydra',hydra.__version__)"
  echo "cpu cores: $($PY -c "import os; print(os.cpu_count())")"; echo "commit: $(cat .gpu/commit.txt 2>/dev/null || echo unknown)"; } > "$RES/env.txt" 2>&1 || { cat "$RES/env.txt"; exit 1; }
cat "$RES/env.txt"; el setup

# 1. benchmark 1, module options
timeout "$(budget 130)" $PY -m benchmarks --device cuda --only 1 --widths 64 --loss-modules eager,fused,compiled \
  --cuda-graph --steps-per-sample 10 --option-repeats 30 --option-warmup 3 --step-repeats-full 20 \
  --out "$RES/bench1_module_options.csv" > "$RES/bench1.log" 2>&1; el "bench 1 rc=$?"
grep -E "module|graph|plain" "$RES/bench1.log" | tail -24
BEST=$($PY - "$RES/bench1_module_options.csv" <<'PY'
import csv, sys
try:
    rows = {r["name"]: float(r["value"]) for r in csv.DictReader(open(sys.argv[1]))}
    kinds = {k: rows[f"w64 module {k} graph step time / plain graph"] for k in ("eager", "fused")}
    print(min(kinds, key=kinds.get))
except Exception:
    print("fused")
PY
); el "module kind for the fig4 run: $BEST"

# 2. SSD300 with the data pipeline at 8 and 16 workers (+ the per-image CPU costs on this machine)
timeout "$(budget 110)" $PY -m benchmarks.detection --threads 4 --sections 3,5 --repeats 2 --device cuda \
  --images 600 --workers-list 8,16 --epochs 3 > "$RES/ssd_pipeline.md" 2>&1; el "ssd rc=$?"
tail -22 "$RES/ssd_pipeline.md"

# 3. one fig4 trial alone on the GPU, first cycles
mkdir -p /tmp/data && tar xzf .gpu/cifar10-jpg.tgz -C /tmp/data; el data
FIG4="progress=false experiment=cifar10_cpu name=gpu_fig4 model.net.width=64 schedule=paper_cifar10 device=cuda
      task.root=/tmp/data/cifar10-jpg paths.output=/tmp/o sampler=learning_loss seed=0 runtime.threads=4"
rm -rf /tmp/o /tmp/det_false /tmp/det_true
timeout "$(budget 160)" $PY -m al_runner $FIG4 runtime.cuda_graph=true runtime.loss_module=$BEST > "$RES/fig4_run.log" 2>&1
rc=$?; el "fig4 (cuda_graph, $BEST) rc=$rc"
if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then   # the graph path failed: the eager path with the time left
  tail -5 "$RES/fig4_run.log"
  timeout "$(budget 120)" $PY -m al_runner $FIG4 > "$RES/fig4_run_eager.log" 2>&1; el "fig4 (eager) rc=$?"
fi
for d in /tmp/o/gpu_fig4/*/; do
  mkdir -p "$RES/fig4_first_cycles/$(basename "$d")"; cp "$d"/{cycles.csv,config.yaml,al-run.log} "$RES/fig4_first_cycles/$(basename "$d")/" 2>/dev/null
done
cat /tmp/o/gpu_fig4/*/cycles.csv 2>/dev/null

# 4. graph replay vs eager steps, deterministic, same numbers?
if [ $((DEADLINE - $(date +%s))) -gt 60 ]; then
  for g in false true; do
    timeout "$(budget 45)" $PY -m al_runner progress=false experiment=demo sampler=learning_loss seed=0 device=cuda \
      runtime.deterministic=true runtime.cuda_graph=$g paths.output=/tmp/det_$g > "$RES/determinism_$g.log" 2>&1
    el "demo cuda_graph=$g rc=$?"
  done
  $PY - > "$RES/determinism.txt" 2>&1 <<'PY'
import glob
import pandas as pd
a, b = (glob.glob(f"/tmp/det_{g}/demo/*/")[0] for g in ("false", "true"))
ca, cb = pd.read_csv(a + "cycles.csv"), pd.read_csv(b + "cycles.csv")
print(cb[["cycle", "n_labeled", "value", "ranking_accuracy", "train_s"]].to_string())
print("eager train_s:", ca["train_s"].tolist())
print("cycles value + ranking accuracy identical:", ca[["value", "ranking_accuracy"]].equals(cb[["value", "ranking_accuracy"]]))
print("selected.csv identical:", open(a + "selected.csv").read() == open(b + "selected.csv").read())
PY
  cat "$RES/determinism.txt"
fi

# summary and the packed results folder
{ echo "# GPU check, issue 22 ($(head -1 "$RES/env.txt"))"; echo; sed 's/^/    /' "$RES/env.txt"; echo
  echo "## benchmark 1 module options"; echo; grep -E "^\| 1 (module|train)" "$RES/bench1_module_options.md" 2>/dev/null; echo
  echo "## SSD300 with the data pipeline"; echo; sed -n '/^## 3/,$p' "$RES/ssd_pipeline.md"; echo
  echo "## fig4 first cycles (cuda_graph=true, loss_module=$BEST)"; echo; cat /tmp/o/gpu_fig4/*/cycles.csv 2>/dev/null; echo
  echo "## determinism"; echo; cat "$RES/determinism.txt" 2>/dev/null; } > "$RES/summary.md"
cp "$RES/summary.md" "$OUT/summary.md"
(cd /tmp/res && tar czf "$OUT/gpu_$KIND.tgz" outputs); el "packed $OUT/gpu_$KIND.tgz"
