"""Distributed training (torch DDP, gloo on this CPU machine) against one process.

Each test launches its ranks as ``python -m torch.distributed.run --nproc_per_node=2`` subprocesses
(one torch thread each, a free port, a subprocess timeout) on a tiny store of 10 molecules x 2
RDKit conformers. What "equal to one process" means (``docs/distributed.md``):

* one optimiser step from the same weights: the gradients (Adam's first moment after one step is
  0.1 x the gradient) agree to 1e-5 of the largest entry (measured ~2e-6), the losses to 1e-5
  (relative), and the updated weights to 1e-6 wherever the gradient is above rounding noise;
* where the loss is flat (a bias feeding a batch norm, a unit active on every atom of the batch)
  the true gradient is 0 and its computed value is rounding noise, which Adam turns into a step
  of up to lr in an arbitrary direction, in one process as under DDP; such a coordinate may stop
  being flat on the next batch, so later steps differ beyond float rounding. Over several steps
  the test therefore compares the losses (1e-3 relative; measured 2e-6 for GraphMVP) and, for
  ``--resume``, requires bit-identical weights between two DDP runs.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from graphmvp.distributed import (
    DistContext,
    DistOptionError,
    check_device_name,
    launch_env,
    resolve_device,
    shard_bounds,
)
from graphmvp.pretrain import epoch_batches, pretrain, resolve_config
from graphmvp.pretrain.trainer import RUN_FILES

pytestmark = [
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="this torch build has no gloo"),
    pytest.mark.usefixtures("one_torch_thread"),
]

REPO = Path(__file__).resolve().parents[1]
SMILES = [
    "CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "OCC(O)CO",
    "COc1ccccc1", "CC#N", "Nc1ccccc1C(=O)O",
]
#: tiny models; the batch size is set per test
TINY = {"num_layers": 2, "emb_dim": 32, "schnet_filters": 16, "schnet_interactions": 1,
        "schnet_gaussians": 10, "progress": False, "log_every": 1, "threads": 1, "deterministic": True, "seed": 3,
        "device": "cpu"}
LAUNCH_TIMEOUT = 300


# -- helpers ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(target: list, nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run`` with ``nproc`` local ranks on a free port; ``target`` is
    ``["-m", module, *args]`` or ``[script, *args]``."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", "--monitor_interval=0.5", *map(str, target)]


def rank_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _kill_tagged(tag: str) -> None:
    """SIGKILL every process whose environment carries ``GRAPHMVP_TEST_LAUNCH=tag``: the launcher
    and its ranks, even ranks the launcher left behind (re-parented, in their own sessions)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if p.environ().get("GRAPHMVP_TEST_LAUNCH") == tag:
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def run_launcher(command: list[str], cwd: Path, timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a launcher; on timeout kill it AND its rank processes (killing only the launcher would
    leave hung ranks behind, holding the output pipes open) and fail."""
    env = {**rank_env(), "GRAPHMVP_TEST_LAUNCH": f"{os.getpid()}-{time.monotonic_ns()}"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tagged(env["GRAPHMVP_TEST_LAUNCH"])
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command[:6])} ... did not finish in {timeout:.0f} s:\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def torchrun(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = run_launcher(torchrun_command(["-m", module, *args]), cwd)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def cli_args(cfg: dict, **extra) -> list[str]:
    """``graphmvp-pretrain`` flags for the ``TINY``-style settings ``cfg`` (plus ``extra``)."""
    args = []
    for key, value in {**cfg, **extra}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def last_state(run: Path) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def assert_same_first_step(single: Path, ddp: Path, lr: float = 1e-3) -> None:
    """One step from the same initial weights: ``ddp`` equals ``single`` (module docstring)."""
    rows_1, rows_2 = read_metrics(single / "metrics.csv"), read_metrics(ddp / "metrics.csv")
    assert [(r["steps"], r["samples"]) for r in rows_1] == [(r["steps"], r["samples"]) for r in rows_2] == [("1", rows_1[0]["samples"])]
    for key in rows_1[0]:
        if key.startswith("loss_"):
            # abs: a contrastive loss near 0 is a difference of O(1) float32 terms
            assert float(rows_2[0][key]) == pytest.approx(float(rows_1[0][key]), rel=1e-5, abs=1e-5), key
        if key.startswith("acc_"):
            assert abs(float(rows_2[0][key]) - float(rows_1[0][key])) <= 0.02, key
    a, b = last_state(single), last_state(ddp)
    order = _optimizer_order(a)
    moments_1 = [a["optimizer"]["state"][i]["exp_avg"] for i in range(len(order))]
    moments_2 = [b["optimizer"]["state"][i]["exp_avg"] for i in range(len(order))]
    scale = max(float(m.abs().max()) for m in moments_1)
    worst = max(float((m1 - m2).abs().max()) for m1, m2 in zip(moments_1, moments_2))
    assert worst <= 1e-5 * scale, f"gradients differ by {worst / scale:.3g} of the largest"
    informative = 0
    for name, moment in zip(order, moments_1):
        diff = (a["model"][name] - b["model"][name]).abs()
        assert float(diff.max()) <= 2.01 * lr, name  # flat coordinates: each at most Adam's first step (lr) away
        keep = moment.abs() > 1e-5 * scale  # a gradient above rounding noise
        informative += int(keep.sum())
        if keep.any():
            assert float(diff[keep].max()) <= 1e-6, (name, float(diff[keep].max()))
    assert informative > 1000  # the comparison covers most of the model


def _optimizer_order(state: dict) -> list[str]:
    """The parameter names of ``last.pt``'s optimiser state, in its order (the model's parameter
    groups: gin, schnet, to_2d, heads)."""
    from graphmvp.pretrain import GraphMVPModel
    from graphmvp.pretrain.config import PretrainConfig

    cfg = PretrainConfig.from_dict(state["config"])
    model = GraphMVPModel(cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = model.parameter_groups(cfg.lr, cfg.schnet_lr_scale, cfg.to2d_lr_scale)
    return [names[id(p)] for g in groups for p in g["params"]]


def assert_same_losses(single: Path, ddp: Path, rel: float = 1e-3) -> None:
    """Several steps: the epochs' losses agree (module docstring)."""
    rows_1, rows_2 = read_metrics(single / "metrics.csv"), read_metrics(ddp / "metrics.csv")
    assert [(r["steps"], r["samples"]) for r in rows_1] == [(r["steps"], r["samples"]) for r in rows_2]
    for r1, r2 in zip(rows_1, rows_2):
        for key in r1:
            if key.startswith("loss_"):
                assert float(r2[key]) == pytest.approx(float(r1[key]), rel=rel), (key, r1[key], r2[key])


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """10 small molecules with 2 RDKit conformers each (explicit H) = 20 samples."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    root = tmp_path_factory.mktemp("ddp_store")
    (root / "mols.csv").write_text("SMILES\n" + "\n".join(SMILES) + "\n")
    path = root / "mols.h5"
    prepare(PrepConfig(input=str(root / "mols.csv"), output=str(path), n_conf=2, gen_confs=2, workers=1))
    return path


@pytest.fixture(scope="module")
def graphmvp_runs(store, tmp_path_factory) -> dict:
    """GraphMVP (EBM-NCE + VRR, 2D + 3D), one global batch of 19 per epoch (pieces of 10 and 9):
    one process for 1 and 2 epochs; 2 ranks for 2 epochs; 2 ranks for 1 epoch (kept as ``cut1``),
    then resumed to 2."""
    root = tmp_path_factory.mktemp("ddp_graphmvp")
    common = {**TINY, "views": "2d3d", "loss": "ebm-nce+vrr", "store": str(store), "batch_size": 19}
    for epochs in (1, 2):
        pretrain(resolve_config(None, **{**common, "epochs": epochs, "out": str(root / f"single{epochs}")}))
    full = torchrun("graphmvp.pretrain.cli", cli_args(common, epochs=2, out=root / "ddp"), root)
    torchrun("graphmvp.pretrain.cli", cli_args(common, epochs=1, out=root / "cut"), root)
    shutil.copytree(root / "cut", root / "cut1")
    resumed = torchrun("graphmvp.pretrain.cli", cli_args(common, epochs=2, out=root / "cut", resume=True), root)
    return {"root": root, "full": full, "resumed": resumed}


# -- launcher environment, devices, sharding --------------------------------------------------------
def test_launch_env_reads_torchrun_variables_and_rejects_bad_ones():
    assert launch_env({}) == launch_env({"WORLD_SIZE": "1"})
    env = launch_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)
    for bad in ({"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "x"}, {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "5"}):
        with pytest.raises(Exception) as info:
            launch_env(bad)
        assert "\n" not in str(info.value)


def test_device_choice_on_a_machine_without_cuda():
    for name in ("auto", "cpu", "cuda", "cuda:1"):
        check_device_name(name)
    with pytest.raises(DistOptionError, match="allowed: auto, cpu, cuda, cuda:N"):
        check_device_name("gpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU-only answers below do not apply")
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(DistOptionError, match="torch sees no CUDA device"):
        resolve_device("cuda")


def test_config_device_default_and_validation(store, tmp_path):
    from graphmvp.pretrain.config import ConfigError

    assert resolve_config(None, store=str(store), out=str(tmp_path)).device == "auto"
    with pytest.raises(ConfigError, match="--device='tpu'"):
        resolve_config(None, store=str(store), out=str(tmp_path), device="tpu")


def test_shards_are_contiguous_cover_the_batch_and_differ_by_at_most_one():
    for n, world in ((8, 2), (7, 2), (5, 3), (2, 2)):
        bounds = [shard_bounds(n, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [b - a for a, b in bounds]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert shard_bounds(7, 0, 2) == (0, 4) and shard_bounds(7, 1, 2) == (4, 7)


def test_epoch_plan_is_one_array_its_pieces_are_the_ranks_shards():
    plan = epoch_batches(21, 8, seed=1, epoch=0)
    assert plan.order.dtype.name == "int64" and plan.order.shape == (21,)
    assert [len(b) for b in plan] == [8, 8, 5]
    ranks = [plan.shard(r, 2) for r in range(2)]
    for i in range(len(plan)):
        assert list(ranks[0][i]) + list(ranks[1][i]) == list(plan[i])  # rank order = batch order
        assert ranks[0].sizes(i) == [len(ranks[0][i]), len(ranks[1][i])]
    # a trailing batch smaller than the number of ranks is dropped (every rank needs a sample)
    assert [len(b) for b in epoch_batches(18, 8, 1, 0, min_batch=3)] == [8, 8]
    assert DistContext().shard_sizes(5) == [5]


# -- the collectives against one process --------------------------------------------------------------
COLLECTIVES_SCRIPT = textwrap.dedent('''
    import copy
    import torch
    from torch import nn
    from graphmvp.distributed import all_gather_rows, all_reduce_sum, convert_sync_batchnorm, distributed_context
    from graphmvp.distributed import _RECENT_COLLECTIVE_TENSORS as held

    with distributed_context("cpu", timeout_s=60) as ctx:
        rank, world = ctx.rank, ctx.world_size
        for sizes in ([4, 3], [3, 0]):  # uneven pieces; in the second case rank 1 holds no row at all
            n = sum(sizes)
            start = sum(sizes[:rank])
            stop = start + sizes[rank]
            torch.manual_seed(0)
            x_all = torch.randn(n, 5, dtype=torch.float64)
            target = torch.randn(n, 5, dtype=torch.float64)
            reference = nn.BatchNorm1d(5).double()
            with torch.no_grad():
                reference.weight.uniform_(0.5, 2.0)
                reference.bias.uniform_(-1.0, 1.0)
            sync = convert_sync_batchnorm(copy.deepcopy(reference))
            # one process: BatchNorm1d on the whole batch, loss = sum(y * target)
            x_ref = x_all.clone().requires_grad_()
            y_ref = reference(x_ref)
            (y_ref * target).sum().backward()
            # this rank: its rows; loss share = world x its part of the sum; gradients averaged as DDP does
            x = x_all[start:stop].clone().requires_grad_()
            y = sync(x)
            (world * (y * target[start:stop]).sum()).backward()
            assert torch.allclose(y, y_ref[start:stop].detach(), atol=1e-12), "output"
            assert torch.allclose(x.grad, world * x_ref.grad[start:stop], atol=1e-10), "input gradient"
            for name in ("weight", "bias"):
                grad = all_reduce_sum(getattr(sync, name).grad)
                assert torch.allclose(grad / world, getattr(reference, name).grad, atol=1e-10), name
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                assert torch.allclose(getattr(sync, name).double(), getattr(reference, name).double(), atol=1e-12), name

            # gather: every rank computes the same loss of the global rows; the gradient reaching its
            # rows is the sum over ranks of that loss's gradient
            weights = torch.arange(1.0, n + 1, dtype=torch.float64)
            z = x_all[start:stop].clone().requires_grad_()
            gathered = all_gather_rows(z, sizes)
            assert torch.equal(gathered.detach(), x_all), "gathered rows"
            ((gathered.sum(dim=1) ** 2) * weights).sum().backward()
            z_ref = x_all.clone().requires_grad_()
            ((z_ref.sum(dim=1) ** 2) * weights).sum().backward()
            assert torch.allclose(z.grad, world * z_ref.grad[start:stop], atol=1e-10), "gather gradient"
        # every tensor our collectives handed to gloo is still referenced from Python (what keeps
        # the process group's destruction from deadlocking; graphmvp.distributed._hold_until_exit)
        assert len(held) >= 20, len(held)
        print(f"rank {rank}: ok", flush=True)
    assert len(held) == 0, "released after the process group is gone"
''')


def test_sync_batchnorm_and_gather_equal_one_process_on_uneven_and_empty_pieces(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES_SCRIPT)
    proc = run_launcher(torchrun_command([script]), tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "rank 0: ok" in proc.stdout and "rank 1: ok" in proc.stdout


# -- pretraining: GraphMVP and a 2D objective ----------------------------------------------------------
def test_graphmvp_two_ranks_equal_one_process(graphmvp_runs):
    root = graphmvp_runs["root"]
    assert_same_first_step(root / "single1", root / "cut1")
    assert_same_losses(root / "single2", root / "ddp")


def test_only_rank_0_writes_the_run_folder_and_logs(graphmvp_runs):
    root, proc = graphmvp_runs["root"], graphmvp_runs["full"]
    assert sorted(p.name for p in (root / "ddp").iterdir()) == sorted(RUN_FILES)
    log = (root / "ddp" / "train.log").read_text()
    assert log.count("epoch 1 step 1/1 ") == 1 and log.count("epoch 2/2:") == 1
    assert "distributed: 2 ranks (gloo)" in log
    assert proc.stdout.count("2 epoch(s), 2 steps in ") == 1  # the closing line: rank 0 only
    assert proc.stdout.count("epoch 1 step 1/1 ") == 1


def test_resume_in_distributed_mode_ends_where_the_uninterrupted_run_ends(graphmvp_runs):
    root = graphmvp_runs["root"]
    full, cut = last_state(root / "ddp"), last_state(root / "cut")
    assert cut["epochs_done"] == full["epochs_done"] == 2 and cut["global_step"] == full["global_step"] == 2
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    for index, state in full["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], cut["optimizer"]["state"][index]["exp_avg_sq"]), index
    rows_full, rows_cut = read_metrics(root / "ddp" / "metrics.csv"), read_metrics(root / "cut" / "metrics.csv")
    assert [r["loss_total"] for r in rows_full] == [r["loss_total"] for r in rows_cut]
    assert "resumed from" in (root / "cut" / "train.log").read_text()


def test_attrmask_two_ranks_equal_one_process(store, tmp_path):
    # batch 7: pieces of 4 and 3 samples, masked atoms counted over both
    common = {**TINY, "views": "2d", "loss": "attrmask", "mask_ratio": 0.0, "store": str(store), "epochs": 1,
              "batch_size": 7, "max_steps": 1}
    pretrain(resolve_config(None, **{**common, "out": str(tmp_path / "single")}))
    torchrun("graphmvp.pretrain.cli", cli_args(common, out=tmp_path / "ddp"), tmp_path)
    assert_same_first_step(tmp_path / "single", tmp_path / "ddp")


@pytest.mark.parametrize("loss", ["graphcl", "joao"])
def test_two_view_contrast_two_ranks_equal_one_process(store, tmp_path, loss):
    """GraphCL / JOAO gather the ranks' pooled views: NT-Xent's negatives are the global batch's
    (batch 7: pieces of 4 and 3), so the first step equals one process's; comparing within each
    rank's piece instead changes the loss by far more than the 1e-5 this allows."""
    common = {**TINY, "views": "2d", "loss": loss, "store": str(store), "epochs": 1, "batch_size": 7, "max_steps": 1}
    pretrain(resolve_config(None, **{**common, "out": str(tmp_path / "single")}))
    torchrun("graphmvp.pretrain.cli", cli_args(common, out=tmp_path / "ddp"), tmp_path)
    assert_same_first_step(tmp_path / "single", tmp_path / "ddp")
    assert "compares the samples of a batch" not in (tmp_path / "ddp" / "train.log").read_text()


# -- failures ---------------------------------------------------------------------------------------------
def test_a_rank_dying_fails_the_job_loudly_and_quickly(store, tmp_path):
    args = cli_args({**TINY, "store": str(store), "batch_size": 8}, epochs=1000, out=tmp_path / "run")
    proc = subprocess.Popen(torchrun_command(["-m", "graphmvp.pretrain.cli", *args]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=rank_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        for line in proc.stdout:  # rank 0's step lines
            if " step 1/3 " in line or time.monotonic() > deadline:
                break
        import psutil

        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.environ().get("LOCAL_RANK") == "1"]
        assert len(workers) == 1, "cannot find rank 1"
        workers[0].send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        out, err = proc.communicate(timeout=120)
        seconds = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert seconds < 60, f"the job took {seconds:.0f} s to fail"
    assert "lost contact with another rank" in err  # rank 0's own one-line message
    assert "Signal 9 (SIGKILL)" in err  # the launcher's summary names the dead rank


HANG_SCRIPT = textwrap.dedent('''
    import sys, time
    from graphmvp.distributed import DistributedError, distributed_context

    with distributed_context("cpu", timeout_s=float(sys.argv[1])) as ctx:
        ctx.sum([1.0])  # both ranks are there
        if ctx.rank == 1:
            time.sleep(120)  # hangs instead of taking part in the next collective
        try:
            ctx.sum([2.0])
        except DistributedError as e:
            print(f"rank {ctx.rank}: {e}", flush=True)
            sys.exit(3)
''')


def test_a_hung_rank_fails_the_others_after_the_timeout(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG_SCRIPT)
    port = str(free_port())
    procs = []
    t0 = time.monotonic()
    try:
        for rank in (0, 1):
            env = {**rank_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "LOCAL_RANK": str(rank),
                   "WORLD_SIZE": "2"}
            procs.append(subprocess.Popen([sys.executable, str(script), "3"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path))
        out, err = procs[0].communicate(timeout=90)
        seconds = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == 3, err[-3000:]
    assert "lost contact with another rank" in out and "--dist-timeout 3 s" in out and "\n" not in out.strip()
    assert seconds < 60


# -- fine-tuning -------------------------------------------------------------------------------------------
def test_finetune_two_ranks_match_one_process(tmp_path, monkeypatch):
    from rdkit import Chem
    from rdkit.Chem import Crippen

    from graphmvp.finetune.config import FinetuneConfig
    from graphmvp.finetune.trainer import finetune

    demo = (REPO / "geom_prep" / "demo" / "zinc_demo.csv").read_text().split()
    smiles = [s for s in demo[1:] if Chem.MolFromSmiles(s) is not None][:48]
    rows = [f"{s},{Crippen.MolLogP(Chem.MolFromSmiles(s)):.4f}" for s in smiles]
    (tmp_path / "logp.csv").write_text("smiles,logp\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    options = {"data_file": str(tmp_path / "logp.csv"), "smiles_col": "smiles", "label_cols": "logp",
               "task_type": "regression", "split": "random", "epochs": 3, "batch_size": 16, "num_layers": 2,
               "emb_dim": 32, "dropout": 0.0, "use_cache": False, "threads": 1, "progress": False, "device": "cpu"}
    single = finetune(FinetuneConfig(**options, out=str(tmp_path / "single")))
    args = ["--data-file", tmp_path / "logp.csv", "--smiles-col", "smiles", "--label-cols", "logp", "--task-type",
            "regression", "--split", "random", "--epochs", "3", "--batch-size", "16", "--num-layers", "2", "--emb-dim",
            "32", "--dropout", "0", "--no-cache", "--threads", "1", "--device", "cpu", "--out", tmp_path / "ddp"]
    torchrun("graphmvp.finetune.cli", args, tmp_path)
    rows_1, rows_2 = read_metrics(tmp_path / "single" / "metrics.csv"), read_metrics(tmp_path / "ddp" / "metrics.csv")
    assert len(rows_1) == len(rows_2) == 3
    for r1, r2 in zip(rows_1, rows_2):
        assert float(r2["train_loss"]) == pytest.approx(float(r1["train_loss"]), rel=1e-4)
        # evaluation uses batch norm's running means, which carry the flat-direction noise (module docstring)
        for key in ("valid_rmse", "test_rmse"):
            assert float(r2[key]) == pytest.approx(float(r1[key]), rel=5e-3), key
    import json

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["timing"]["world_size"] == 2 and single["timing"]["world_size"] == 1
