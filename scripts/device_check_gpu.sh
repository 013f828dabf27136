#!/bin/bash
# GPU check (issue 11 / docs/benchmarks.md "Performance"), run on a lent H100 through the workplace's device tool:
#   1. CUDA smoke + determinism: the demo's learning-loss run twice with runtime.deterministic=true, CSVs compared;
#   2. real CIFAR-10 (JPEG tree), full-width ResNet-18 under the paper's schedule (schedule=paper_cifar10),
#      3 seeds x {random, learning_loss} as 6 processes sharing the GPU, stopped by `timeout` after ~4.5 min;
#   3. benchmark 1 (training step with vs without the loss module) on CUDA.
# The GPU machine has torch/torchvision/pandas but no Hydra and no network, so it reads a prepared, git-ignored
# folder .gpu/ beside this repo's root:
#   mkdir -p .gpu/site && cp -r .venv/lib/python3.11/site-packages/{hydra,omegaconf,antlr4,submitit,mlxtend}* .gpu/site/
#   (cd ../shared/data && tar czf - cifar10-jpg) > .gpu/cifar10-jpg.tgz      # 20 MB
#   cp scripts/device_check_gpu.sh .gpu/run.sh     # then, on the GPU machine: bash .gpu/run.sh  (writes to $OUT)
# Results of 2026-11-26: outputs/reference/gpu_h100/README.md.
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.gpu/site:$PWD AL_RUNNER_CACHE=/tmp/cache
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi -L
python3 -c "import torch,torchvision,hydra,omegaconf,al_runner;print(torch.__version__,torchvision.__version__,hydra.__version__,torch.cuda.get_device_name())" || exit 1
mkdir -p /tmp/data && tar xzf .gpu/cifar10-jpg.tgz -C /tmp/data; el data
AL="python3 -m al_runner progress=false"
for o in a b; do
  timeout 120 $AL experiment=demo sampler=learning_loss seed=0 device=cuda runtime.deterministic=true paths.output=/tmp/smoke_$o > $OUT/smoke_$o.log 2>&1 || { el smoke $o failed; tail -40 $OUT/smoke_$o.log; exit 1; }
  el smoke $o done
done
python3 - <<'PY'
import glob, pandas as pd
a, b = (glob.glob(f"/tmp/smoke_{o}/demo/*/") [0] for o in "ab")
ca, cb = pd.read_csv(a + "cycles.csv"), pd.read_csv(b + "cycles.csv")
print(ca[["cycle", "n_labeled", "value", "ranking_accuracy", "train_s"]].to_string())
print("cycles value+ranking identical:", ca[["value", "ranking_accuracy"]].equals(cb[["value", "ranking_accuracy"]]))
print("selected.csv identical:", open(a + "selected.csv").read() == open(b + "selected.csv").read())
PY
C="experiment=cifar10_cpu name=gpu_fig4 model.net.width=64 schedule=paper_cifar10 device=cuda task.root=/tmp/data/cifar10-jpg paths.output=/tmp/o runtime.threads=2"
END=$(( $(date +%s) + 280 ))   # every run stops at the same moment
timeout $((END - $(date +%s))) $AL $C sampler=learning_loss seed=0 > /tmp/ll0.log 2>&1 &
# the first run decodes and caches the images; the others start once the cache exists
for i in $(seq 60); do ls /tmp/cache/*.pt >/dev/null 2>&1 && break; sleep 2; done; sleep 3; el cache ready
for s in 0 1 2; do for sm in random learning_loss; do
  [ "$s$sm" = 0learning_loss ] && continue
  timeout $((END - $(date +%s))) $AL $C sampler=$sm seed=$s > /tmp/$sm$s.log 2>&1 &
done; done
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait; el runs done
grep -h "\] cycle" /tmp/o/gpu_fig4/*/al-run.log | grep labeled
timeout 90 python3 -m benchmarks --device cuda --only 1 --out $OUT/bench1_gpu.csv --data /tmp/data/cifar10-jpg 2>&1 | tail -30; el bench done
cd /tmp && tar czf $OUT/gpu_runs.tgz --exclude='*.pt' --exclude='*.ckpt' o smoke_a smoke_b *.log; el tar done
