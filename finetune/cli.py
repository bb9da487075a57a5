"""``graphmvp-finetune``: fine-tune the 2D encoder and tabulate results.

Examples::

    graphmvp-finetune --task tox21 --init runs/graphmvp --seeds 0 1 2 --out runs/ft/tox21-graphmvp
    graphmvp-finetune --task bbbp --seeds 0 1 2                       # no pretraining (baseline)
    graphmvp-finetune --task bbbp --encoder graphgps                  # no pretraining, GraphGPS
    graphmvp-finetune --task freesolv --data-file freesolv.csv --init model_2d.pt
    graphmvp-finetune --data-file my.csv --smiles-col smiles --label-cols a,b \\
                      --task-type classification --split random
    graphmvp-finetune --task davis --init runs/graphmvp --data-file DeepDTA/data/davis
    graphmvp-finetune --task bbbp --extra-features rdkit2d --ensemble 5 --save-model --out runs/ft/bbbp-ens
    graphmvp-finetune predict runs/ft/bbbp-ens --data-file new.csv    # mean and spread of all members
    graphmvp-finetune table runs/ft/*                                  # paper-style table
    graphmvp-finetune tasks                                            # the registered tasks
    torchrun --nproc_per_node=2 -m graphmvp.finetune.cli --task bbbp --init runs/graphmvp   # DDP (docs/distributed.md)

Every option that changes the numbers is recorded in OUT/config.json and OUT/summary.json.
Exit codes: 0 done, 2 bad input (one line on stderr, before any training), 1 training failed
(non-finite loss, or under torchrun another rank died or hung past --dist-timeout), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn, Optional

from graphmvp.finetune.errors import FinetuneError
from graphmvp.distributed import DEFAULT_TIMEOUT_S, DistributedError, launch_env, record_errors

PROG = "graphmvp-finetune"
COMMANDS = ("run", "table", "tasks", "predict")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fractions(text: str) -> tuple[float, float, float]:
    parts = text.replace(",", " ").split()
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers, e.g. 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers, e.g. 0.8,0.1,0.1")
    return values  # type: ignore[return-value]


def build_run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    bool_flag = argparse.BooleanOptionalAction
    g = p.add_argument_group("data")
    g.add_argument("--task", help="registered task (graphmvp-finetune tasks), e.g. tox21, freesolv, davis")
    g.add_argument("--data-file", help="own data: CSV, CSV.gz or SDF (with --task: that task's file, read locally); "
                                       "for davis/kiba: the DeepDTA data folder")
    g.add_argument("--chem-dataset", help="Hu et al.'s unpacked chem_dataset folder (reads dataset/<task>/raw)")
    g.add_argument("--data-url", action="append", default=[], dest="data_urls",
                   help="URL to download the task's file from instead of the registry's (repeat for mirrors)")
    g.add_argument("--smiles-col", help="SMILES column (own data)")
    g.add_argument("--label-cols", help="comma-separated label columns (own data)")
    g.add_argument("--task-type", choices=("classification", "regression"), help="own data: classification or regression")
    g.add_argument("--hydrogens", choices=("drop", "keep", "pretrained"),
                   help="drop: graphs of the SMILES atoms (upstream; --protocol paper); keep: explicit hydrogens "
                        "added; pretrained: as the --init encoder was pretrained (keep for the released "
                        "checkpoints), drop without one (the default protocol's)")
    g.add_argument("--cache", action=bool_flag, default=True, dest="use_cache",
                   help="cache the featurised data set in $GRAPHMVP_HOME/featurised (default on)")

    g = p.add_argument_group("split")
    g.add_argument("--split", help="scaffold (default), random_scaffold, balanced_scaffold, random, column")
    g.add_argument("--split-col", help="column holding train/valid/test per row (implies --split column)")
    g.add_argument("--split-fractions", type=_fractions, default=(0.8, 0.1, 0.1), help="train,valid,test (default 0.8,0.1,0.1)")
    g.add_argument("--split-seed", type=int, help="seed of random splits (default: each run seed)")
    g.add_argument("--dta-valid-fraction", type=float, default=0.2, help="DTA: part of the training folds for validation (0.2)")
    g.add_argument("--dta-drug-batch", default="unique",
                   help="DTA: a training batch encodes each distinct drug once (unique, default; about 2x faster "
                        "on Davis) or once per pair (per-pair, upstream's computation)")

    g = p.add_argument_group("model")
    g.add_argument("--init", help="pretraining run folder, encoder file (model_2d.pt) or released checkpoint name; "
                                  "default: random initialisation (no pretraining)")
    g.add_argument("--method", help="label of this run in tables (default: from --init)")
    g.add_argument("--encoder", help="2D encoder: gin or graphgps (default: the checkpoint's; gin without --init)")
    g.add_argument("--gps-hidden-dim", type=int, help="GraphGPS layer width (default: the checkpoint's; 192 without --init)")
    g.add_argument("--gps-heads", type=int, help="GraphGPS attention heads (default: the checkpoint's; 4 without --init)")
    g.add_argument("--gps-attn-dropout", type=float,
                   help="GraphGPS attention dropout (default: the checkpoint's; 0.5 without --init)")
    g.add_argument("--gps-rwse-norm", help="GraphGPS RWSE input: none or batchnorm (default: the checkpoint's; "
                   "none without --init)")
    g.add_argument("--num-layers", type=int, help="GIN layers (default: the checkpoint's, 5 without --init)")
    g.add_argument("--emb-dim", type=int, help="GIN width (default: the checkpoint's, 300 without --init)")
    g.add_argument("--jk", help="jumping knowledge: last, concat, max, sum (default: the checkpoint's, last)")
    g.add_argument("--pooling", help="mean, sum or max (default: the checkpoint's, mean)")
    g.add_argument("--dropout", type=float, help="GIN dropout (default 0.5 classification, 0.2 regression/DTA)")
    g.add_argument("--head", help="linear or mlp (default: the protocol's; paper linear, default mlp)")
    g.add_argument("--head-hidden", type=int, help="hidden width of the MLP head (default: the GIN width)")
    g.add_argument("--protein-encoder", default="graphdta", help="DTA protein CNN: graphdta (default) or cnn")
    g.add_argument("--extra-features", metavar="KIND",
                   help="molecule features concatenated to the pooled graph embedding before the head: morgan "
                        "(radius 2, 2048 bits, binary) or rdkit2d (RDKit 2D descriptors standardised with the "
                        "training split's mean/std), or none; default: the protocol's (default protocol: rdkit2d for "
                        "regression, none otherwise; paper: none)")
    g.add_argument("--graph-features", metavar="KIND",
                   help="hu: Hu et al.'s atom and bond features alone (what the encoders were pretrained on); "
                        "chemprop: plus chemprop's atom descriptors (degree, formal charge, hydrogens, "
                        "hybridisation, aromaticity) and bond descriptors (conjugated, in ring, stereo) in "
                        "embedding tables of their own, zero-initialised on a pretrained encoder; GIN only. "
                        "Default: the protocol's")

    g = p.add_argument_group("optimisation (unset options come from --protocol, then from the task type)")
    g.add_argument("--protocol", default="default",
                   help="default (batch 32, standardised targets, MLP head, noam lr, early stopping) or paper "
                        "(upstream GraphMVP's settings, for reproduction tables); see finetune/README.md")
    g.add_argument("--epochs", type=int, help="default 100 (DTA 200)")
    g.add_argument("--batch-size", type=int, help="default 32 (paper: 256)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3, DTA 5e-4)")
    g.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0)")
    g.add_argument("--encoder-lr-scale", type=float, help="encoder lr = lr x this (default 1)")
    g.add_argument("--lr-schedule", help="constant, noam or cosine (default noam; paper constant)")
    g.add_argument("--warmup-epochs", type=float, help="linear lr warm-up from lr/10 (default 2; paper 0)")
    g.add_argument("--patience", type=int, help="stop after this many epochs without a better validation value; "
                   "0 = never (default 30; paper 0)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this; 0 = off (default 0)")
    g.add_argument("--freeze-encoder", action="store_true", help="linear probe: train only the head")
    g.add_argument("--standardize", action=bool_flag, help="regression: train on targets standardised with the "
                   "training mean/std (default on; paper off)")

    g = p.add_argument_group("run")
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="run seeds (default 0); e.g. --seeds 0 1 2")
    g.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="train N models per seed (member k seeded from (seed, k)) and report the mean of their "
                        "predictions, each member at its own best-validation epoch, and every member (default 1)")
    g.add_argument("--out", help="output folder (default runs/finetune/<task>-<init>)")
    g.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    g.add_argument("--eval-train", action="store_true", help="also evaluate the training split every epoch")
    g.add_argument("--save-model", action="store_true", help="write seed_<s>/best_model.pt")
    g.add_argument("--progress", action=bool_flag, default=True, help="log one line per epoch (default on)")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA when torch and DGL both support it, else CPU; default), cpu, cuda, cuda:N")
    g.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"under torchrun: how long a rank waits for the others before the job fails (default: {DEFAULT_TIMEOUT_S:g})")
    return p


def build_table_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} table", description="Paper-style table (methods x tasks, mean(std) over seeds) of run folders.")
    p.add_argument("runs", nargs="+", help="run folders (or folders holding run folders)")
    p.add_argument("--epoch", choices=("best", "last"), default="best", help="test at the best-validation (default) or last epoch")
    p.add_argument("--metric", help="another reported metric (e.g. mae, ci, pearson) instead of each task's primary one")
    p.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
    return p


def build_predict_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} predict", description="Predict new molecules with saved fine-tuned model(s) "
                "(--save-model); a run folder is an ensemble of its seeds (and --ensemble members). Extra features "
                "are computed and standardised as in training.")
    p.add_argument("model", help="seed_<s>/best_model.pt (or best_model_member_<k>.pt), or a run folder (every "
                                 "model file of every seed: an ensemble)")
    p.add_argument("--data-file", required=True, help="CSV or CSV.gz with a SMILES column (and, for a drug-target "
                                                      "affinity model, a column of protein sequences)")
    p.add_argument("--smiles-col", default="smiles", help="SMILES column (default smiles)")
    p.add_argument("--protein-col", help="drug-target affinity models: the column of amino-acid sequences")
    p.add_argument("--out", help="prediction CSV (default: <data file stem>.predictions.csv next to it)")
    return p


def _predict(argv: list[str]) -> int:
    from graphmvp.finetune.predict import predict_to_csv

    args = build_predict_parser().parse_args(argv)
    data = Path(args.data_file)
    out = args.out or str(data.with_name(data.name.removesuffix(".gz").removesuffix(".csv") + ".predictions.csv"))
    print(f"predictions in {predict_to_csv(args.model, data, args.smiles_col, out, protein_col=args.protein_col)}")
    return 0


def _run(argv: list[str]) -> int:
    from graphmvp.finetune.config import FinetuneConfig
    from graphmvp.finetune.trainer import NonFiniteLoss, finetune

    args = build_run_parser().parse_args(argv)
    fields = vars(args)
    dist_timeout = fields.pop("dist_timeout")  # how the run executes, not what it computes: not in the config
    cfg = FinetuneConfig(**fields)
    env = launch_env()
    who = f" (rank {env.rank}/{env.world_size})" if env.world_size > 1 else ""
    quiet = not args.progress or env.rank != 0  # under torchrun rank 0 alone reports progress
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        summary = finetune(cfg, command=[PROG, *argv], dist_timeout=dist_timeout)
    except (NonFiniteLoss, DistributedError) as e:
        print(f"{PROG}: training failed{who}: {e}", file=sys.stderr)
        return 1
    except FinetuneError as e:
        print(f"{PROG}: error{who}: {e}", file=sys.stderr)
        return 2
    if env.rank != 0:
        return 0
    r = summary["result"]
    metric = summary["metric"]
    print(f"{summary['task']} / {summary['method']}: test {metric} at best validation epoch "
          f"{r['test_at_best_valid']['mean']:.4f} ({r['test_at_best_valid']['std']:.4f}), at last epoch "
          f"{r['test_at_last_epoch']['mean']:.4f} ({r['test_at_last_epoch']['std']:.4f}) over seeds {summary['seeds']}; "
          f"results in {cfg.resolved().out}")
    return 0


@record_errors  # under torchrun: an unexpected exception's traceback reaches the launcher's error summary
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    try:
        if command == "tasks":
            from graphmvp.finetune.tasks import describe_tasks

            print(describe_tasks())
            return 0
        if command == "predict":
            return _predict(argv)
        if command == "table":
            from graphmvp.finetune.table import table

            args = build_table_parser().parse_args(argv)
            print(table(args.runs, fmt=args.format, epoch=args.epoch, metric=args.metric))
            return 0
        return _run(argv)
    except FinetuneError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
