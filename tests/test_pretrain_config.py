"""Pretraining config: presets give the released numbers, flags override them, bad options fail
at start with one line (exit code 2) and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphmvp.pretrain import PRESETS, ConfigError, PretrainConfig, resolve_config
from graphmvp.pretrain.cli import config_from_args, main

SMILES = ["CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OCC(O)CO"]

# The released settings of ../shared/reference/GRAPHMVP.md ("Released settings (all)" + variants)
RELEASED_ALL = dict(
    views="2d3d",
    normalize=True,
    rr_loss="l2",
    detach_target=True,
    beta=2.0,
    alpha1=1.0,
    alpha2=1.0,
    mask_ratio=0.15,
    schnet_lr_scale=0.1,
    to2d_lr_scale=0.1,
    dropout=0.0,
    epochs=100,
    batch_size=256,
    lr=1e-3,
    weight_decay=0.0,
    neg_samples=1,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """A tiny conformer store, and a copy of it without any 3D positions."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare
    from graphmvp.prep.store_writer import write_store
    from graphmvp.data.store import ConformerStore

    root = tmp_path_factory.mktemp("cfg_store")
    csv = root / "mols.csv"
    csv.write_text("SMILES\n" + "\n".join(SMILES) + "\n")
    store = root / "mols.h5"
    prepare(PrepConfig(input=str(csv), output=str(store), n_conf=2, gen_confs=2, workers=1))
    flat = root / "no_positions.h5"
    with ConformerStore(store) as s:
        mols = list(s)
        config = s.config
    for m in mols:
        m.positions = np.zeros((0, m.num_atoms, 3), np.float32)
        m.energy = np.zeros(0)
        m.boltzmann_weight = np.zeros(0)
        m.conf_source_index = np.zeros(0, np.int32)
    write_store(flat, mols, [], config)
    with ConformerStore(flat) as s:
        assert not s.has_positions and len(s) == len(SMILES)
    return {"store": store, "flat": flat, "root": root}


# -- presets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "preset, loss, temperature, alpha3",
    [
        ("graphmvp", ("ebm-nce", "vrr"), 0.2, None),
        ("graphmvp-g", ("ebm-nce", "vrr", "attrmask"), 0.05, 1.0),
        ("graphmvp-c", ("ebm-nce", "vrr", "contextpred"), 0.2, 0.1),
    ],
)
def test_graphmvp_presets_are_the_released_settings(preset, loss, temperature, alpha3):
    cfg = resolve_config(preset, out="x")
    assert cfg.preset == preset
    assert cfg.loss == loss
    assert cfg.temperature == temperature
    assert cfg.alpha3 == alpha3
    for name, value in RELEASED_ALL.items():
        assert getattr(cfg, name) == value, name
    # weights as the model uses them
    assert cfg.weight("contrastive") == 1.0 and cfg.weight("generative") == 1.0
    assert cfg.weight("2d") == (alpha3 or 0.0)


@pytest.mark.parametrize("preset", ["attrmask", "contextpred"])
def test_2d_baseline_presets(preset):
    cfg = resolve_config(preset, out="x")
    assert cfg.views == "2d" and cfg.loss == (preset,)
    assert cfg.alpha1 is None and cfg.alpha2 is None and cfg.alpha3 == 1.0
    assert cfg.mask_ratio == 0.0  # Hu et al. pretrain on whole molecules, each once per epoch
    assert cfg.conformer_sampling == "random"
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.dropout) == (100, 256, 1e-3, 0.0, 0.0)


def test_defaults_equal_the_graphmvp_preset():
    plain = resolve_config(out="x").result_defining()
    preset = resolve_config("graphmvp", out="x").result_defining()
    assert plain == preset


def test_explicit_values_override_the_preset():
    cfg = resolve_config("graphmvp-g", out="x", temperature=0.1, alpha3=0.5, beta=1.0, schnet_lr_scale=1.0)
    assert (cfg.temperature, cfg.alpha3, cfg.beta, cfg.schnet_lr_scale) == (0.1, 0.5, 1.0, 1.0)
    assert cfg.loss == ("ebm-nce", "vrr", "attrmask") and cfg.alpha1 == 1.0  # the rest stays


def test_cli_flags_override_the_preset():
    cfg, _ = config_from_args(
        ["--preset", "graphmvp-c", "--out", "x", "--T", "0.3", "--no-normalize", "--alpha3", "0.2",
         "--to2d-lr-scale", "1", "--no-detach-target", "--rr-loss", "cosine", "--epochs", "3"]
    )
    assert cfg.temperature == 0.3 and cfg.normalize is False and cfg.alpha3 == 0.2
    assert cfg.to2d_lr_scale == 1.0 and cfg.detach_target is False and cfg.rr_loss == "cosine" and cfg.epochs == 3
    assert cfg.loss == ("ebm-nce", "vrr", "contextpred") and cfg.schnet_lr_scale == 0.1  # from the preset


def test_preset_weight_of_a_dropped_term_is_dropped_but_an_explicit_one_is_an_error():
    cfg = resolve_config("graphmvp-g", out="x", loss="ebm-nce+vrr")
    assert cfg.alpha3 is None and cfg.weight("2d") == 0.0
    with pytest.raises(ConfigError, match="--alpha3"):
        resolve_config("graphmvp-g", out="x", loss="ebm-nce+vrr", alpha3=1.0)


def test_unset_weights_resolve_to_one_and_config_round_trips():
    cfg = resolve_config(out="x", loss="infonce+rr", alpha2=0.5)
    assert (cfg.alpha1, cfg.alpha2, cfg.alpha3) == (1.0, 0.5, None)
    import yaml

    again = PretrainConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.validate() is again


# -- bad options ---------------------------------------------------------------------------------
def bad_cases(stores) -> list[tuple[list[str], str]]:
    s = str(stores["store"])
    return [
        (["--loss", "ebm-nce+foo"], "unknown loss 'foo' (known: attrmask, contextpred, ebm-nce, "),
        (["--loss", "ebm-nce", "--alpha2", "0.5"], "--alpha2=0.5 weights the generative term"),
        (["--loss", "vrr", "--alpha3", "1"], "--alpha3=1.0 weights the 2d term"),
        (["--views", "2d", "--loss", "ebm-nce+vrr"], "--views 2d cannot train the contrastive objective 'ebm-nce'"),
        (["--views", "2d", "--loss", "attrmask+vrr"], "--views 2d cannot train the generative objective 'vrr'"),
        (["--views", "2d3d", "--loss", "attrmask"], "needs a contrastive or generative term"),
        (["--loss", "ebm-nce+infonce"], "two contrastive terms (ebm-nce, infonce)"),
        (["--loss", "vrr+rr"], "two generative terms"),
        (["--loss", "ebm-nce+vrr+attrmask+contextpred"], "two 2d terms"),
        (["--T", "0"], "--temperature=0.0: must be > 0"),
        (["--T", "-0.1"], "--temperature=-0.1: must be > 0"),
        (["--batch-size", "0"], "--batch-size=0: must be > 0"),
        (["--epochs", "0"], "--epochs=0: must be > 0"),
        (["--epochs", "-2"], "--epochs=-2: must be > 0"),
        (["--mask-ratio", "1"], "--mask-ratio=1.0: must be < 1"),
        (["--conformer-sampling", "best"], "--conformer-sampling='best': allowed: all, random"),
        (["--rr-loss", "l3"], "--rr-loss='l3': allowed: cosine, l1, l2"),
        (["--views", "3d"], "--views='3d': allowed: 2d3d, 2d"),
        (["--pooling", "attention"], "--pooling='attention': allowed: mean, sum, max"),
        (["--loss", "ebm-nce+"], "expected names joined by '+'"),
        (["--store", str(stores["root"] / "missing.h5")], "missing.h5: no such file"),
        (["--store", str(stores["flat"]), "--views", "2d3d"], "has no 3D positions"),
        (["--store", s, "--resume"], "nothing to resume"),
        (["--store", s, "--neg-samples", "0"], "--neg-samples=0: must be > 0"),
        (["--store", s, "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
        (["--store", s, "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--preset", "graphmvp-x"], "argument --preset: invalid choice: 'graphmvp-x'"),
    ]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def test_every_bad_option_fails_with_one_line_and_exit_2(stores, tmp_path, capsys):
    for i, (argv, expected) in enumerate(bad_cases(stores)):
        out = tmp_path / f"run{i}"
        code, err = run_main(["--out", str(out), *argv], capsys)
        assert code == 2, (argv, code, err)
        lines = err.splitlines()
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith("graphmvp-pretrain: error: "), lines[0]
        assert expected in lines[0], (argv, lines[0])
        assert not out.exists(), f"{argv} created the run folder before failing"


def test_existing_run_is_not_overwritten_silently(stores, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not really")
    code, err = run_main(["--out", str(out), "--store", str(stores["store"])], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "already holds a run" in err
    assert (out / "last.pt").read_bytes() == b"not really"


def test_store_without_positions_is_fine_for_2d_only(stores):
    from graphmvp.pretrain.config import check_inputs

    check_inputs(resolve_config("attrmask", out="x", store=str(stores["flat"])))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--loss", "ebm-nce+foo"], "unknown loss 'foo'"),
        (["--T", "0"], "--temperature=0.0: must be > 0"),
        (["--store", "/nonexistent/x.h5"], "no such file"),
        (["--epochs", "x"], "invalid int value"),
    ],
)
def test_cli_subprocess_exit_code_2_and_one_line(argv, expected, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "graphmvp.pretrain.cli", "--out", str(tmp_path / "run"), *argv],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "run").exists()


def test_print_config_shows_the_resolved_preset(capsys):
    assert main(["--preset", "graphmvp-g", "--out", "x", "--print-config"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["temperature"] == 0.05 and shown["alpha3"] == 1.0 and shown["loss"] == ["ebm-nce", "vrr", "attrmask"]


def test_presets_table_has_the_documented_names():
    # GraphMVP's released settings and Hu et al.'s baselines; the 2D task modules add their own
    assert {"graphmvp", "graphmvp-g", "graphmvp-c", "attrmask", "contextpred"} <= set(PRESETS)


def test_encoders_must_fit_their_view():
    with pytest.raises(ConfigError, match="--encoder-2d='schnet': allowed: gin, graphgps"):
        resolve_config("graphmvp", encoder_2d="schnet")
    with pytest.raises(ConfigError, match="--encoder-3d='gin': allowed: schnet"):
        resolve_config("graphmvp", encoder_3d="gin")
