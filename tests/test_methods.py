"""One module per 2D method: declarations instead of import side effects and parameter-name reflection.

* presets are built from the explicit list of method modules, whatever was imported first;
* ``--opt NAME`` that a method does not declare is a ConfigError naming the method and its options;
* objectives and encoders get their declared constructor arguments: a parameter renamed on one
  side only is a TypeError, not a silently used default.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from graphmvp.models import ENCODERS
from graphmvp.models.gin import GIN
from graphmvp.objectives import OBJECTIVES
from graphmvp.objectives.contrastive import EBMNCE
from graphmvp.objectives.graphcl import GraphCL
from graphmvp.pretrain.cli import config_from_args
from graphmvp.pretrain.config import ConfigError, resolve_config
from graphmvp.pretrain.model import (
    CROSS_VIEW_ARGS,
    ENCODER_ARGS,
    GraphMVPModel,
    encoder_kwargs,
    objective_kwargs,
)
from graphmvp.pretrain.presets import GRAPHMVP_PRESETS, PRESETS
from graphmvp.pretrain.tasks import METHOD_MODULES, METHODS, TASKS_2D, NoOptions, Task2D, options_of, task_options

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "graphmvp" / "pretrain" / "tasks"

#: every preset the package ships (GraphMVP's and each 2D method's)
ALL_PRESETS = {
    "graphmvp", "graphmvp-g", "graphmvp-c", "attrmask", "contextpred", "structmae-p", "structmae-l", "graphmae",
    "motif-mae", "gpt-gnn", "graphlog", "g-contextual", "g-motif", "edgepred", "infomax", "graphcl", "joao",
}
SMALL = {"out": "unused", "emb_dim": 8, "num_layers": 2}


def _preset_of(method: Task2D) -> str:
    return next(iter(method.presets))


# -- presets -----------------------------------------------------------------------------------------
def test_presets_are_complete_in_a_fresh_interpreter_importing_only_presets():
    code = (
        "import json, importlib\n"
        "from graphmvp.pretrain import presets\n"
        "first = list(presets.PRESETS)\n"
        # a method module imported again registers nothing twice and adds nothing
        "from graphmvp.pretrain.tasks import METHOD_MODULES\n"
        "for m in METHOD_MODULES:\n"
        "    importlib.reload(importlib.import_module('graphmvp.pretrain.tasks.' + m))\n"
        "print(json.dumps([first, list(presets.PRESETS)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    first, after_reload = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(first) == ALL_PRESETS and len(first) == len(ALL_PRESETS)
    assert after_reload == first


def test_presets_are_gathered_from_the_method_declarations():
    declared = list(GRAPHMVP_PRESETS) + [name for method in METHODS for name in method.presets]
    assert list(PRESETS) == declared
    assert set(declared) == ALL_PRESETS
    for method in METHODS:
        for name, values in method.presets.items():
            assert PRESETS[name] == dict(values)
            assert method.name in PRESETS[name]["loss"]  # a method's presets train it
            resolve_config(name, out="unused")  # and are valid configs


def test_every_method_module_is_listed_and_declares_its_methods():
    files = {p.stem for p in TASKS_DIR.glob("*.py")} - {"__init__", "base"}
    assert set(METHOD_MODULES) == files, "a method module that is not in METHOD_MODULES is never loaded"
    assert sorted(m.name for m in METHODS) == TASKS_2D.names()
    two_d = sorted(n for n in OBJECTIVES.names() if OBJECTIVES.get(n).kind == "2d")
    assert sorted(m.name for m in METHODS) == two_d, "every 2D objective has exactly one method declaration"
    for method in METHODS:
        assert TASKS_2D.get(method.name) is method
        assert OBJECTIVES.get(method.name) is method.objective


def test_preset_table_refuses_a_second_definition_and_can_drop_one():
    from graphmvp.pretrain.presets import register_preset

    with pytest.raises(ValueError, match="already defined"):
        register_preset("graphlog", {})
    register_preset("methods-test-preset", {**PRESETS["infomax"]})
    try:
        assert resolve_config("methods-test-preset", out="unused").loss == ("infomax",)
    finally:
        del PRESETS["methods-test-preset"]
    assert "methods-test-preset" not in PRESETS


# -- options ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [m.name for m in METHODS])
def test_options_are_frozen_dataclasses_with_the_presets_values(name):
    method = TASKS_2D.get(name)
    cfg = resolve_config(_preset_of(method), out="unused")
    options = options_of(cfg)
    assert type(options) is method.options and dataclasses.is_dataclass(options)
    fields = [f.name for f in dataclasses.fields(options)]
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(options, fields[0], None)
    expected = {**method.option_defaults(), **cfg.options}
    assert task_options(cfg) == {k: type(method.option_defaults()[k])(v) for k, v in expected.items()}


@pytest.mark.parametrize("name", [m.name for m in METHODS])
def test_an_undeclared_option_is_an_error_naming_the_method_and_its_options(name):
    method = TASKS_2D.get(name)
    preset = _preset_of(method)
    names = list(method.option_defaults())
    for attempt in (lambda: resolve_config(preset, out="unused", options={"no_such_option": 1}),
                    lambda: config_from_args(["--out", "unused", "--preset", preset, "--opt", "no_such_option=1"])):
        with pytest.raises(ConfigError) as info:
            attempt()
        message = str(info.value)
        assert f"{name} has no option 'no_such_option'" in message
        listed = message.split("its options: ", 1)[1]
        assert (re.findall(r"(\w+) \(default ", listed) or [listed]) == (names or ["none"])


def test_a_renamed_option_is_an_error_not_a_default():
    # GraphCL's temperature is cl_temperature (--temperature is the 2D-3D term's)
    with pytest.raises(ConfigError, match="graphcl has no option 'temperature'; its options: .*cl_temperature"):
        resolve_config("graphcl", out="unused", options={"temperature": 0.5})
    with pytest.raises(ConfigError, match="expected a number"):
        resolve_config("graphcl", out="unused", options={"cl_temperature": "hot"})
    with pytest.raises(ValueError, match="graphlog has no option 'taus'"):
        TASKS_2D.get("graphlog").resolve_options({"taus": 0.1})


def test_the_declaration_checks_its_options_type():
    method = TASKS_2D.get("infomax")

    @dataclasses.dataclass
    class Mutable:
        x: int = 1

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        x: int

    for bad, match in ((Mutable, "frozen dataclass"), (dict, "frozen dataclass"), (NoDefault, "x have no default")):
        with pytest.raises(TypeError, match=match):
            dataclasses.replace(method, options=bad)
    with pytest.raises(TypeError, match="not a '2d' objective"):
        dataclasses.replace(method, objective=EBMNCE)
    assert method.options is NoOptions and method.option_defaults() == {}


# -- declared constructor arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [m.name for m in METHODS])
def test_objective_arguments_are_declared_and_pass_every_matching_option(name):
    method = TASKS_2D.get(name)
    cfg = resolve_config(_preset_of(method), **SMALL)
    args = objective_kwargs(cfg, name)
    params = inspect.signature(method.objective).parameters
    assert set(args) <= set(params)
    options = options_of(cfg)
    for field in dataclasses.fields(options):
        if field.name in params:  # an option the objective takes must reach it
            assert field.name in args and args[field.name] == getattr(options, field.name), field.name
    if "emb_dim" in params:
        assert args["emb_dim"] == 8


def test_option_values_reach_the_objective():
    cfg = resolve_config("graphlog", **SMALL, options={"tau": 0.5, "num_prototypes": 4, "hierarchy": 2})
    objective = GraphMVPModel(cfg).objectives["2d"]
    assert (objective.tau, objective.num_prototypes, objective.hierarchy) == (0.5, 4, 2)
    cfg = resolve_config("joao", **SMALL, options={"augmentations": ["identity", "node_drop"], "gamma": 0.3})
    objective = GraphMVPModel(cfg).objectives["2d"]
    assert objective.gamma == 0.3 and objective.pair_probs.shape == (4,)


class _RenamedGraphCL(GraphCL):
    """GraphCL whose ``cl_temperature`` parameter was renamed ``temperature``."""

    def __init__(self, emb_dim: int = 300, temperature: float = 0.1, symmetric: bool = False,
                 positive_in_denominator: bool = False):
        super().__init__(emb_dim, temperature, symmetric, positive_in_denominator)


class _RenamedEBMNCE(EBMNCE):
    def __init__(self, tau: float = 0.2, normalize: bool = True, num_negatives: int = 1):
        super().__init__(tau, normalize, num_negatives)


class _RenamedGIN(GIN):
    def __init__(self, num_layers: int = 5, emb_dim: int = 300, drop_ratio: float = 0.0, jk: str = "last"):
        super().__init__(num_layers, emb_dim, drop_ratio, jk)


def test_a_renamed_objective_parameter_fails_loudly(monkeypatch):
    cfg = resolve_config("graphcl", **SMALL, options={"cl_temperature": 0.3})
    renamed = dataclasses.replace(TASKS_2D.get("graphcl"), objective=_RenamedGraphCL)
    with pytest.raises(TypeError, match="2D method 'graphcl': _RenamedGraphCL does not take .*cl_temperature"):
        renamed.build_objective(cfg)
    monkeypatch.setitem(TASKS_2D._items, "graphcl", renamed)
    with pytest.raises(TypeError, match="cl_temperature"):
        GraphMVPModel(cfg)


def test_a_renamed_cross_view_or_encoder_parameter_fails_loudly(monkeypatch):
    cfg = resolve_config("graphmvp", **SMALL, schnet_filters=4, schnet_interactions=1)
    with monkeypatch.context() as patch:
        patch.setitem(OBJECTIVES._items, "ebm-nce", _RenamedEBMNCE)
        with pytest.raises(TypeError, match="objective 'ebm-nce': _RenamedEBMNCE does not take .*temperature"):
            GraphMVPModel(cfg)
    with monkeypatch.context() as patch:
        patch.setitem(ENCODERS._items, "gin", _RenamedGIN)
        with pytest.raises(TypeError, match="encoder 'gin': _RenamedGIN does not take .*dropout"):
            GraphMVPModel(cfg)
    GraphMVPModel(cfg)  # the real classes take their declarations


def test_every_encoder_and_cross_view_objective_has_a_declaration():
    assert set(ENCODER_ARGS) == set(ENCODERS.names())
    cross_view = {n for n in OBJECTIVES.names() if OBJECTIVES.get(n).kind in ("contrastive", "generative")}
    assert set(CROSS_VIEW_ARGS) == cross_view
    cfg = resolve_config("graphmvp", out="unused")
    for name in ENCODER_ARGS:
        assert set(ENCODER_ARGS[name](cfg)) <= set(inspect.signature(ENCODERS.get(name)).parameters)
    for name in CROSS_VIEW_ARGS:
        assert set(CROSS_VIEW_ARGS[name](cfg)) <= set(inspect.signature(OBJECTIVES.get(name)).parameters)
    assert encoder_kwargs(cfg, "3d")["hidden"] == cfg.emb_dim
    assert objective_kwargs(cfg, "ebm-nce") == {"temperature": 0.2, "normalize": True, "num_negatives": 1}
