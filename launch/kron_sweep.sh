#!/usr/bin/env bash
# The Kronecker experiment (docs/kronecker.md; its table: docs/results/kron.md): factorise a trained
# dense run with each init and r, fine-tune each for the same number of steps with and without
# freezing (optim.freeze=pretrained: only the factors train) and with and without distillation from
# the dense run, then print the table (python -m gssm_jax.kron --table).
#   launch/kron_sweep.sh DENSE_RUN OUT_DIR [FACTOR] [STEPS]
# DENSE_RUN: a finished `python -m gssm_jax.main` run (e.g. the default debug run). KRON_ARGS: more
# flags for every surgery (e.g. KRON_ARGS=--config.optim.warmup=4 when STEPS < the run's warmup).
set -euo pipefail
dense=$1
out=$2
factor=${3:-4x1}
steps=${4:-100}
mkdir -p "$out"
dense_steps=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$dense/final.json")
# reference: the dense run itself, trained the same number of steps more (its optimizer state kept)
if [ ! -f "$out/dense/final.json" ]; then
  rm -rf "$out/dense" && cp -r "$dense" "$out/dense" && rm -f "$out/dense/final.json"
  python -m gssm_jax.main --workdir "$out/dense" --config.optim.steps=$((dense_steps + steps)) \
    > "$out/dense.log" 2>&1
fi
# One job per (init, r, freeze): its surgery, then its fine-tunes without and with distillation.
# JOBS of them run at once (default 3).
job() {
  set -euo pipefail
  local init=$1 r=$2 freeze=$3
  local base=$out/${init}_r${r}_freeze-${freeze}
  if [ ! -f "$base.kron/kron.json" ]; then
    rm -rf "$base.kron"
    python -m gssm_jax.kron --from "$dense" --out "$base.kron" --init "$init" --terms "$r" \
      --factor "$factor" --steps "$steps" --config.optim.freeze="$freeze" ${KRON_ARGS:-} \
      > "$base.kron.log" 2>&1
  fi
  for distill in 0 1; do
    local run=${base}_distill-$distill teacher=""
    [ -f "$run/final.json" ] && continue
    rm -rf "$run" && cp -r "$base.kron" "$run"
    [ "$distill" = 1 ] && teacher=$dense
    # the teacher is the one intended change to the surgery's config (recorded as config.1.json)
    python -m gssm_jax.main --workdir "$run" --config.optim.distill.teacher="$teacher" \
      --allow-config-change > "$run.log" 2>&1
  done
}
export -f job
export dense out factor steps KRON_ARGS
for freeze in none pretrained; do
  for init in vanloan prune random; do
    for r in 1 2; do echo "$init $r $freeze"; done
  done
done | xargs -P "${JOBS:-3}" -L 1 bash -c 'job "$@"' _
python -m gssm_jax.kron --table "$out" --from "$dense"
