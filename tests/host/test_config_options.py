"""The commands' options are generated from their config dataclasses: every field is an option
or says why not, with the field's default, choices and help; no command has more than 12
hand-written parameters; the torch modules implement exactly the names the configs offer."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from qdev.host.cli import cli
from qdev.host.cli.dcopts import config_fields
from qdev.host.stream_config import StreamConfig
from qdev.training.compile.config import DEFAULT_STEPS, CompileConfig
from qdev.training.config import AdaptConfig, TrainConfig

#: command -> its config classes
GENERATED = {
    "train": (TrainConfig,),
    "adapt": (AdaptConfig,),
    "stream": (StreamConfig,),
    "compile": (CompileConfig,),
}
MAX_HAND_WRITTEN = 12


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_field_is_an_option_or_says_why_not(name: str) -> None:
    params = {p.name: p for p in cli.commands[name].params}
    for cls in GENERATED[name]:
        for cf in config_fields(cls):
            where = f"{cls.__name__}.{cf.name}"
            assert cf.opt is not None, f"{where}: declared without opt() or no_option()"
            if cf.opt.reason is not None:
                assert len(cf.opt.reason) > 10, (
                    where
                )  # it may still be set by a hand-written parameter
                continue
            p = params.get(cf.name)
            assert isinstance(p, click.Option), f"{where}: no option"
            assert p.help == cf.opt.help and cf.opt.help, where
            if cf.opt.required:
                assert p.required, where
            else:
                assert p.default == (
                    cf.opt.cli_default if cf.opt.cli_default is not None else cf.default
                ), where
            if cf.opt.choices:
                assert tuple(p.type.choices) == cf.opt.choices, where


def test_no_command_has_more_than_twelve_hand_written_parameters() -> None:
    over = {}
    for path, cmd in _commands():
        generated = {cf.name for cls in GENERATED.get(path, ()) for cf in config_fields(cls)}
        own = [p.name for p in cmd.params if p.name not in generated]
        if len(own) > MAX_HAND_WRITTEN:
            over[path] = own
    assert over == {}


def test_train_builds_its_config_from_the_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import qdev.training.trainer as trainer

    seen = {}

    def fake_train(cfg, resume=False, progress=None):  # noqa: ANN001, ANN202
        seen["cfg"], seen["resume"] = cfg, resume
        return {"epoch": 0}

    monkeypatch.setattr(trainer, "train", fake_train)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--out",
            str(out),
            "--lambda",
            "0.5",
            "--no-bn",
            "--bits",
            "3..6",
            "--no-augment",
            "--epochs",
            "7",
            "--width",
            "4",
            "--select",
            "balanced",
            "--weight-decay",
            "0.001",
            "--resume",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert isinstance(cfg, TrainConfig) and seen["resume"] is True
    assert (cfg.lam, cfg.epochs, cfg.augment, cfg.select, cfg.weight_decay, cfg.out) == (
        0.5,
        7,
        "none",
        "balanced",
        0.001,
        str(out),
    )
    assert (cfg.model.batchnorm, cfg.model.min_bits, cfg.model.max_bits, cfg.model.width) == (
        False,
        3,
        6,
        4,
    )
    defaults = TrainConfig()
    assert (cfg.lr, cfg.bit_loss, cfg.model.init_bits) == (
        defaults.lr,
        defaults.bit_loss,
        defaults.model.init_bits,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--augment", "sideways"], "--augment"),
        (["--bits", "8..2"], "bit widths"),
        (["--size", "100"], "--size 100"),
        (["--init-from", "/no/such.pt"], "--init-from"),
    ],
)
def test_train_refuses_a_bad_option_in_one_line(tmp_path, args: list[str], words: str) -> None:
    r = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "r"), *args])
    assert r.exit_code == 2
    line = r.output.strip()
    assert words in line and "Traceback" not in line and not (tmp_path / "r").exists()


def test_the_torch_modules_implement_exactly_the_offered_names() -> None:
    pytest.importorskip("torch")
    from qdev.training import config
    from qdev.training.augment import AUGMENT_PRESETS
    from qdev.training.losses import DICE_MODES

    assert set(AUGMENT_PRESETS) == set(config.AUGMENT_NAMES)
    assert set(DICE_MODES) == set(config.DICE_NAMES)


def test_compile_builds_its_config_from_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeatable --verify, a board name in any case, a boolean pair, the rest defaults."""
    import qdev.training.compile.builder as builder

    seen = {}
    monkeypatch.setattr(builder, "compile_run", lambda run, cfg, cb: seen.update(cfg=cfg) or {})
    args = ["compile", "runs/x", "--board", "kv260", "--verify", "cppsim", "--verify", "stitched"]
    r = CliRunner().invoke(cli, [*args, "--fused-thresholds", "--json"])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.board, cfg.verify, cfg.standalone_thresholds) == (
        "KV260",
        ("cppsim", "stitched"),
        False,
    )
    assert cfg.steps[-3:] == ["qdev_cppsim", "qdev_stitched", "qdev_bitstream"]
    assert cfg.steps[:-3] == DEFAULT_STEPS[:-1] and cfg.mvau_wwidth_max == 36


@pytest.mark.parametrize(
    "args, words",
    [
        (["--board", "Zedboard"], "--board"),
        (["--board", "KV260", "--mvau-wwidth-max", "4"], "8..4096"),
        (["--board", "KV260", "--max-utilisation", "1.5"], "--max-utilisation"),
        (["--board", "KV260", "--cppsim-opt", "-Ofast"], "--cppsim-opt"),
    ],
)
def test_compile_refuses_a_bad_option_in_one_line(args: list[str], words: str) -> None:
    r = CliRunner().invoke(cli, ["compile", "runs/none", *args])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
