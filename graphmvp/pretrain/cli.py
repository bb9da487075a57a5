"""``graphmvp-pretrain``: pretrain a 2D GIN with GraphMVP (2D + 3D views) or a 2D-only baseline.

Examples::

    graphmvp-pretrain --preset graphmvp --store geom.h5 --out runs/graphmvp
    graphmvp-pretrain --views 2d3d --loss ebm-nce+vrr --T 0.1 --epochs 10 --out runs/t01
    graphmvp-pretrain --preset graphmvp-g --store geom.h5 --out runs/g --resume
    graphmvp-pretrain --preset attrmask --store geom.h5 --out runs/attrmask
    torchrun --nproc_per_node=2 -m graphmvp.pretrain.cli --preset graphmvp --store geom.h5 --out runs/ddp

Without ``--store`` the bundled demo molecules are prepared (once) into
``<OUT>/../demo_conformers.h5``. Options given explicitly override the preset. The run folder
gets config.yaml, train.log, metrics.csv, model_2d.pt (the encoder fine-tuning loads),
best_model_2d.pt, last.pt and loss_curves.png.

Under ``torchrun`` (docs/distributed.md) every rank runs this command: ``--batch-size`` is the
global batch, rank 0 writes the run folder.

Exit codes: 0 done, 2 invalid options (one line on stderr, nothing done), 1 non-finite loss or a
failed distributed run (another rank died or hung past ``--dist-timeout``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn, Optional

from graphmvp.distributed import DEFAULT_TIMEOUT_S, DistributedError, launch_env, record_errors
from graphmvp.pretrain.config import PRESETS, ConfigError, PretrainConfig, malloc_mmap_threshold, resolve_config

PROG = "graphmvp-pretrain"
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PretrainConfig)}


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _default(name: str) -> str:
    value = _DEFAULTS[name]
    if isinstance(value, tuple):
        value = "+".join(value)
    return f"(default: {value})"


def _task_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (NAME, VALUE read as YAML)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    try:
        return name.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: VALUE is not valid YAML") from None


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       argument_default=argparse.SUPPRESS, allow_abbrev=False)
    bool_flag = argparse.BooleanOptionalAction

    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="run folder")
    g.add_argument("--preset", choices=list(PRESETS), help="released settings: " + ", ".join(PRESETS))
    g.add_argument("--store", help="HDF5 conformer store (graphmvp-prep); default: the bundled demo store")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--epochs", type=int, help=_default("epochs"))
    g.add_argument("--max-steps", type=int, dest="max_steps", help="stop after this many optimiser steps in total")
    g.add_argument("--seed", type=int, help=_default("seed"))
    g.add_argument("--num-workers", type=int, dest="num_workers", help="DataLoader worker processes " + _default("num_workers"))
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    g.add_argument("--deterministic", action=bool_flag, help="torch.use_deterministic_algorithms (off by default)")
    g.add_argument("--log-every", type=int, dest="log_every", help="steps between log lines " + _default("log_every"))
    g.add_argument("--progress", action=bool_flag, help="tqdm progress bar (on by default)")
    g.add_argument("--device", help="auto (CUDA when torch and DGL both support it, else CPU), cpu, cuda, cuda:N "
                   + _default("device"))
    g.add_argument("--dist-timeout", type=float, dest="dist_timeout", metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others before the job fails "
                        f"(default: {DEFAULT_TIMEOUT_S:g})")
    g.add_argument("--malloc-tuning", dest="malloc_tuning", action=bool_flag,
                   help="glibc: keep freed memory in the heap (fewer page faults per step; on by default)")

    g = p.add_argument_group("data")
    g.add_argument("--views", help="2d3d or 2d " + _default("views"))
    g.add_argument("--conformer-sampling", dest="conformer_sampling", help="all or random " + _default("conformer_sampling"))
    g.add_argument("--mask-ratio", type=float, dest="mask_ratio", help="subgraph mask M of both views " + _default("mask_ratio"))
    g.add_argument("--attrmask-rate", "--mask-rate", type=float, dest="attrmask_rate",
                   help="masking rate of attrmask (masked-node prediction) " + _default("attrmask_rate"))
    g.add_argument("--cutoff", type=float, help="3D neighbour radius and SchNet cutoff, Angstrom " + _default("cutoff"))
    g.add_argument("--max-neighbors", type=int, dest="max_neighbors", help="nearest 3D neighbours per atom " + _default("max_neighbors"))

    g = p.add_argument_group("objectives")
    g.add_argument("--loss", help="objectives joined by '+', e.g. ebm-nce+vrr, ebm-nce+vrr+attrmask " + _default("loss"))
    g.add_argument("--alpha1", type=float, help="weight of the contrastive term (default 1)")
    g.add_argument("--alpha2", type=float, help="weight of the generative term (default 1)")
    g.add_argument("--alpha3", type=float, help="weight of the 2D term, attrmask/contextpred (default 1)")
    g.add_argument("--T", type=float, dest="temperature", help="contrastive temperature " + _default("temperature"))
    g.add_argument("--normalize", action=bool_flag, help="L2-normalise the compared vectors (on by default)")
    g.add_argument("--neg-samples", type=int, dest="neg_samples", help="K negatives " + _default("neg_samples"))
    g.add_argument("--beta", type=float, help="VRR KL weight " + _default("beta"))
    g.add_argument("--rr-loss", dest="rr_loss", help="l2, l1 or cosine " + _default("rr_loss"))
    g.add_argument("--detach-target", dest="detach_target", action=bool_flag, help="stop gradients into the reconstruction target (on by default)")
    g.add_argument("--mask-dist", dest="mask_dist", help="attrmask: where to mask, uniform, pagerank or learnable "
                   + _default("mask_dist"))
    g.add_argument("--target", help="attrmask: what to predict, atom, motif or contextual " + _default("target"))
    g.add_argument("--decoder", help="attrmask: linear or gnn (GraphMAE re-mask) " + _default("decoder"))
    g.add_argument("--decoder-loss", dest="decoder_loss", help="attrmask: ce or sce (scaled cosine error) "
                   + _default("decoder_loss"))
    g.add_argument("--opt", dest="options", action="append", type=_task_option, metavar="NAME=VALUE",
                   help="a hyperparameter of the 2D task (repeatable; VALUE is read as YAML, e.g. 0.2, true, [a, b]); "
                        "an unknown NAME lists the task's options")

    g = p.add_argument_group("models")
    g.add_argument("--num-layers", type=int, dest="num_layers", help=_default("num_layers"))
    g.add_argument("--emb-dim", type=int, dest="emb_dim", help="GIN and SchNet width " + _default("emb_dim"))
    g.add_argument("--pooling", help="2D readout: mean, sum, max " + _default("pooling"))
    g.add_argument("--dropout", type=float, help=_default("dropout"))
    g.add_argument("--encoder", "--encoder-2d", dest="encoder_2d", help="2D encoder: gin or graphgps " + _default("encoder_2d"))
    g.add_argument("--gps-hidden-dim", type=int, dest="gps_hidden_dim", help="GraphGPS layer width " + _default("gps_hidden_dim"))
    g.add_argument("--gps-heads", type=int, dest="gps_heads", help="GraphGPS attention heads " + _default("gps_heads"))
    g.add_argument("--gps-attn-dropout", type=float, dest="gps_attn_dropout", help="GraphGPS attention dropout " + _default("gps_attn_dropout"))
    g.add_argument("--rwse-steps", type=int, dest="rwse_steps", help="GraphGPS random-walk encoding steps " + _default("rwse_steps"))
    g.add_argument("--gps-rwse-norm", dest="gps_rwse_norm", help="GraphGPS RWSE input: none (raw probabilities) or "
                   "batchnorm (GraphGPS's; unstable on rare ring sizes, see docs/methods.md) " + _default("gps_rwse_norm"))
    g.add_argument("--schnet-filters", type=int, dest="schnet_filters", help=_default("schnet_filters"))
    g.add_argument("--schnet-interactions", type=int, dest="schnet_interactions", help=_default("schnet_interactions"))
    g.add_argument("--schnet-gaussians", type=int, dest="schnet_gaussians", help=_default("schnet_gaussians"))
    g.add_argument("--schnet-impl", dest="schnet_impl", help="how SchNet runs (same weights): tabulated, fused, plain, fused-bf16 " + _default("schnet_impl"))
    g.add_argument("--schnet-edge-chunk", type=int, dest="schnet_edge_chunk", metavar="EDGES",
                   help="tabulated SchNet: edges per chunk of the convolution (bounds its per-edge buffers; 0 = all at once) "
                   + _default("schnet_edge_chunk"))

    g = p.add_argument_group("optimisation (Adam)")
    g.add_argument("--batch-size", type=int, dest="batch_size", help=_default("batch_size"))
    g.add_argument("--lr", type=float, help=_default("lr"))
    g.add_argument("--weight-decay", type=float, dest="weight_decay", help=_default("weight_decay"))
    g.add_argument("--schnet-lr-scale", type=float, dest="schnet_lr_scale", help="SchNet lr = lr x this " + _default("schnet_lr_scale"))
    g.add_argument("--to2d-lr-scale", type=float, dest="to2d_lr_scale", help="3D->2D reconstruction model lr = lr x this " + _default("to2d_lr_scale"))

    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


def config_from_args(argv: Optional[list[str]] = None) -> tuple[PretrainConfig, dict[str, Any]]:
    """Parse ``argv`` into the resolved config (raises ConfigError) and the parsed options."""
    args = vars(build_parser().parse_args(argv))
    options = dict(args)
    options.pop("print_config", None)
    options.pop("dist_timeout", None)  # how the run executes, not what it computes: not in the config
    preset = options.pop("preset", None)
    if "options" in options:
        pairs = options["options"]
        names = [n for n, _ in pairs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"--opt {', '.join(twice)} given twice")
        options["options"] = dict(pairs)
    return resolve_config(preset, **options), args


@record_errors  # under torchrun: an unexpected exception's traceback reaches the launcher's error summary
def main(argv: Optional[list[str]] = None) -> int:
    from graphmvp.demo import DemoStore
    from graphmvp.malloc_tuning import tune_malloc
    from graphmvp.pretrain.trainer import NonFiniteLossError, pretrain

    env = launch_env()
    who = f" (rank {env.rank}/{env.world_size})" if env.world_size > 1 else ""
    try:
        cfg, args = config_from_args(argv)
        if args.get("print_config"):
            print(cfg.to_yaml(), end="")
            return 0
        if cfg.malloc_tuning:  # process-wide: the command line owns the process, the library does not
            tune_malloc(malloc_mmap_threshold(cfg))
        result = pretrain(cfg, dist_timeout=args.get("dist_timeout", DEFAULT_TIMEOUT_S),
                          store_provider=DemoStore() if cfg.store is None else None)
    except ConfigError as e:
        print(f"{PROG}: error{who}: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, DistributedError) as e:
        print(f"{PROG}: error{who}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted{who}", file=sys.stderr)
        return 130
    if env.rank == 0:
        print(f"{result.epochs_done} epoch(s), {result.global_step} steps in {result.seconds:.1f} s; "
              f"2D encoder: {result.model_2d} (best epoch {result.best_epoch}: {result.best_model_2d})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
