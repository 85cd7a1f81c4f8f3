"""How the disentanglement metrics change with training: one run on the shapes dataset, trained epoch by epoch and
measured (MIG, FactorVAE score, DCI, test reconstruction and KL) at each epoch asked for; the table tells where MIG
levels off, which sets the epochs of the disentanglement study (docs/disentanglement.md).

    python -m lab.epoch_scan --model cnn --beta 4 --at 1 2 4 8 12 16 24 32 --out runs/epoch-scan-cnn
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from cli import OneLineParser, add_options, given, option_error
from config import TrainConfig
from data import load_dataset
from evaluate import disentanglement_of
from lab.tables import write_table
from models import ModelConfig, build_model
from runs import RunFolder
from train import fit

COLUMNS = ("mig", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def scan(model_config: ModelConfig, config: TrainConfig, at: list[int], out: Path) -> pd.DataFrame:
    """Train to each epoch of `at` in turn (resuming the run in `out`) and measure it there: one row per epoch."""
    data, rows = load_dataset(config.dataset), []
    run = RunFolder(out)
    for epoch in at:
        started = time.perf_counter()
        checkpoint = run.checkpoint if run.trained() else None
        if checkpoint is None or checkpoint["epoch"] < epoch:
            model = build_model(model_config if checkpoint is None else checkpoint["config"], seed=config.seed)
            fit(model, data, replace(config, epochs=epoch), out_dir=run, checkpoint=checkpoint, progress=False)
        run = RunFolder(out)
        history = run.checkpoint["history"][:epoch]
        scores = disentanglement_of(run.model(), data, seed=config.seed)
        rows.append(
            {
                "epoch": epoch,
                **{name: scores[name] for name in COLUMNS},
                "recon": history[-1]["test"]["recon"],
                "kl": history[-1]["test"]["kl"],
                "seconds": time.perf_counter() - started,
            }
        )
        print(", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()), flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m lab.epoch_scan", description="MIG and the other scores epoch by epoch.")
    add_options(p, ModelConfig)
    add_options(p, TrainConfig, skip=("epochs",))
    p.add_argument("--at", type=int, nargs="+", required=True, help="the epochs to measure at, ascending")
    p.add_argument("--out", required=True, help="the run folder (resumed if it holds the run)")
    p.add_argument("--table", default="results/shapes-epochs", help="the table's stem (default results/shapes-epochs)")
    args = p.parse_args(argv)
    try:
        model_config = ModelConfig(**{"latent_dim": 10, **given(args, ModelConfig)})
        config = TrainConfig(**{"dataset": "shapes", **given(args, TrainConfig), "epochs": max(args.at)})
    except ValueError as error:
        p.error(option_error(error))
    if sorted(set(args.at)) != args.at or args.at[0] < 1:
        p.error("--at: give distinct epochs >= 1 in ascending order")
    table = scan(model_config, config, args.at, Path(args.out))
    command = "python -m lab.epoch_scan " + " ".join(sys.argv[1:] if argv is None else argv)
    header = f"# MIG and the other scores epoch by epoch\n\nMade by `{command}`.\n\n"
    write_table(table.assign(model=model_config.model, beta=config.beta), Path(args.table), header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
