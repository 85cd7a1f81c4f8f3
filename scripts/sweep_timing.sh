#!/usr/bin/env bash
# Wall time of the same 6-run FC sweep three ways, on this machine, one after another (run it on a quiet machine):
#   the old sequential sweep loop (sweep.py at 785732a, before the Optuna engine), the Optuna sweep with
#   --workers 1, and with --workers 2, with a light evaluation. The default is shortened so that it takes minutes
#   (2 epochs on 10,000 training images); `scripts/sweep_timing.sh 20 60000` is the full 20-epoch sweep (~40 min).
#   Prints one line per plan; a complete run replaces results/sweep-timing-E-epochs-N.md (its own settings only).
#   usage: scripts/sweep_timing.sh [EPOCHS] [TRAIN_IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-2}
images=${2:-10000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; git worktree remove --force "$tmp/old" 2>/dev/null || true' EXIT
git worktree add -q --detach "$tmp/old" 785732a
ln -s "$PWD/.venv" "$tmp/old/.venv"
common=(--model fc --betas 0.01 0.1 0.5 1 2 4 --epochs "$epochs" --train-limit "$images" --eval-limit 2000 --k 10
        --iwae-images 500 --samples 2000 --no-progress)
time_it() {  # label, folder, command...
    local label=$1 folder=$2; shift 2
    local start=$(date +%s%N)
    (cd "$folder" && "$@" > "$tmp/$label.log" 2>&1)
    printf '| %s | %d |\n' "$label" $(( ($(date +%s%N) - start) / 1000000000 ))
}
{
    echo "Same 6-run FC sweep (betas 0.01 0.1 0.5 1 2 4, $epochs epochs on $images images, light evaluation),"
    echo "made by scripts/sweep_timing.sh on $(date -u +%Y-%m-%d), $(nproc) cores, load before: $(cut -d' ' -f1 /proc/loadavg)"
    echo
    echo "| plan | wall seconds |"
    echo "|---|--:|"
    time_it "old sequential loop (785732a)" "$tmp/old" .venv/bin/python sweep.py "${common[@]}" \
        --runs-dir "$tmp/runs-old" --results-dir "$tmp/res-old" --img-dir "$tmp/img-old"
    for workers in 1 2; do  # records, tables and figures into the temporary folder: nothing committed changes
        time_it "Optuna, --workers $workers" . .venv/bin/python -m lab.sweep "${common[@]}" --workers "$workers" \
            --runs-dir "$tmp/runs-$workers" --results-dir "$tmp/res-$workers" --img-dir "$tmp/img-$workers" \
            --records-dir "$tmp/records-$workers"
    done
} | tee "$tmp/timing.md"
mv "$tmp/timing.md" "results/sweep-timing-$epochs-epochs-$images.md"
