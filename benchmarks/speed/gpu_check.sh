#!/usr/bin/env bash
# The GPU speed check of issue 6, on one H100 in at most about 8 minutes. Through the device
# tool, from the repository root (av is not installed there; .whl holds its wheel):
#
#   run(command="bash benchmarks/speed/gpu_check.sh", carry=[".whl"], timeout_s=560)
#
# Prints and writes $OUT/gpu_results.json (bf16 matmul TFLOP/s; C3D proposal clips/s for eager
# fp32, bf16 + channels_last_3d and torch.compile at batch 256; training clips/s at bf16,
# batch 64, through scnn.train, eager and compiled (mode default); end-to-end detection of a
# 5-minute video, x real time; decode frames/s in one and in several processes) and
# $OUT/gpu_check.log. torch.compile uses mode max-autotune-no-cudagraphs when it compiles
# within COMPILE_PROBE_S seconds, else the default mode.
#
# A CPU dry run of the same steps (tiny model, short video):
#   SCNN_CHECK_DEVICE=cpu SCNN_CHECK_MODEL=tiny SCNN_CHECK_VIDEO_S=30 bash benchmarks/speed/gpu_check.sh
set -u -o pipefail

OUT=${OUT:-/tmp/scnn-gpu-check}
DEVICE=${SCNN_CHECK_DEVICE:-cuda}
MODEL=${SCNN_CHECK_MODEL:-faithful}
VIDEO_S=${SCNN_CHECK_VIDEO_S:-300}
COMPILE_PROBE_S=${SCNN_CHECK_COMPILE_PROBE_S:-150}
mkdir -p "$OUT"

if ! python3 -c "import av" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/scnn-inductor-cache  # the probe's compilations are reused
BENCH=(python3 benchmarks/speed/speed.py --model "$MODEL" --device "$DEVICE" --work /tmp/scnn-bench-gpu)

{
    date -Is
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
    python3 -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__)"
    mode=max-autotune-no-cudagraphs
    if ! timeout "$COMPILE_PROBE_S" "${BENCH[@]}" --sections networks --compile "$mode" \
        --video-s 30 --seconds 2 --out "$OUT/gpu_compile_probe.json"; then
        echo "compile mode $mode did not finish within $COMPILE_PROBE_S s: using default"
        mode=default
    fi
    "${BENCH[@]}" --compile "$mode" --train-compile default --video-s "$VIDEO_S" \
        --sections decode,clips,networks,train,detect --out "$OUT/gpu_results.json"
    date -Is
} 2>&1 | tee "$OUT/gpu_check.log"
