#!/usr/bin/env bash
# The GPU check (issue 16): every smoke run and every declared full-scale rehearsal on the device, then the throughput of three
# full-scale configurations (S4D on ListOps, ResNet-18 on CIFAR-10, greedy decoding of a random-weight
# Llama-3-8B-architecture LM) and KV-cached TransformerLM decoding; JSON records under <out>/gpu-check/. Ten minutes at most.
#   slurm/gpu-check.sh                            # on a CUDA machine (or: sbatch slurm/gpu-check.sh)
#   slurm/gpu-check.sh --device cpu --budget tiny # the same script on a CPU, tiny sizes (tested in CI)
# Options go to `python -m suite.gpucheck` (--out, --benches, --smoke and --rehearse all|none|slug,...).
# PYTHON picks the interpreter (default python3); it needs torch, and transformers for the decode bench.
#SBATCH --job-name=gpu-check
#SBATCH --gres=gpu:1
#SBATCH --time=00:15:00
set -euo pipefail
cd "$(dirname "$0")/.." 2>/dev/null || cd "${SLURM_SUBMIT_DIR:-.}"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=cuda
args=("$@")
for i in "${!args[@]}"; do [[ "${args[$i]}" == --device ]] && DEVICE=${args[$((i + 1))]:-}; done
if [[ "$DEVICE" == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: $PY's torch sees no GPU; installing the CUDA build of torch 2.13.0" >&2
  "$PY" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128 \
    || { echo "gpu-check: could not install a CUDA build of torch (offline?); point PYTHON at an interpreter whose torch sees the GPU" >&2; exit 2; }
fi
"$PY" -c "import torch" 2>/dev/null \
  || { echo "gpu-check: $PY cannot import torch; set PYTHON to the suite's interpreter (e.g. PYTHON=.venv/bin/python)" >&2; exit 2; }
exec timeout 600 "$PY" -m suite.gpucheck "$@"
