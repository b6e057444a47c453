"""Datasets in other forms (images/ + masks/ with colour maps, CSV/JSON datalists, patients),
`qdev evaluate` on them as deployed, and `qdev adapt`, end to end on synthetic sites the tests
make (the real second site is not in CI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from qdev.core.errors import DataError
from qdev.core.probe.phantom import phantom_image
from qdev.host.cli import cli
from qdev.training.data import (
    DataOptions,
    find_duplicates,
    make_split,
    open_dataset,
    parse_colours,
    read_pack,
    write_pack,
)

REPO = Path(__file__).resolve().parents[2]
COLOURS = "green=benign,red=malignant"
PATTERN = "^([A-Z]+)_"
KINDS = ("benign", "malignant", "normal")


def write_site(
    root: Path,
    patients=("ANNA", "BERT", "CARL", "DORA", "EMIL"),
    per: int = 6,
    size=(96, 120),
    colour: bool = True,
    seed: int = 0,
) -> dict[str, str]:
    """An images/ + masks/ site: RGB masks green = benign, red = malignant (BUS-UCLM's form), or
    binary. Returns file stem -> class."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    truth = {}
    k = 0
    for p in patients:
        for i in range(per):
            cls = KINDS[(k + i) % 3]
            img, mask, _ = phantom_image(seed * 1000 + k * 10 + i, cls, *size)
            stem = f"{p}_{i:03d}"
            Image.fromarray(img).convert("RGB").save(root / "images" / f"{stem}.png")
            if colour:
                m = np.zeros((*mask.shape, 3), np.uint8)
                m[mask.astype(bool)] = (0, 255, 0) if cls == "benign" else (255, 0, 0)
            else:
                m = (mask.astype(bool) * 255).astype(np.uint8)
            Image.fromarray(m).save(root / "masks" / f"{stem}.png")
            truth[stem] = cls
        k += 1
    return truth


def _opts(**kw) -> DataOptions:
    return DataOptions(
        parse_colours(kw.get("colours", COLOURS)), kw.get("pattern", PATTERN), kw.get("site")
    )


def test_pairs_with_colour_masks_read_classes_and_patients(tmp_path):
    truth = write_site(tmp_path / "site")
    a = open_dataset(tmp_path / "site", (32, 32), options=_opts())
    assert a.kind == "pairs" and len(a) == len(truth) == 30
    got = {i.split("/", 1)[1]: i.split("/", 1)[0] for i in a.ids}
    assert got == truth  # every class from the mask's colour
    assert a.patients is not None and sorted(set(a.patients)) == [
        "ANNA",
        "BERT",
        "CARL",
        "DORA",
        "EMIL",
    ]
    assert all(a.ids[k].split("/")[1].startswith(p) for k, p in enumerate(a.patients))
    normal = a.labels == 2
    assert not a.masks[normal].any() and a.masks[~normal].reshape((~normal).sum(), -1).any(1).all()
    # binary masks without a colour map: "lesion" of no stated class, "normal" where empty
    write_site(tmp_path / "bin", colour=False)
    b = open_dataset(tmp_path / "bin", (32, 32), options=DataOptions(None, PATTERN))
    assert {i.split("/")[0] for i in b.ids} == {"lesion", "normal"}
    np.testing.assert_array_equal(a.masks, b.masks)  # the same lesions either way
    np.testing.assert_array_equal(a.images, b.images)


def test_patient_split_keeps_every_patient_in_one_split_and_balances_lesions(tmp_path):
    write_site(tmp_path / "site", patients=tuple(f"P{chr(65 + i)}" for i in range(10)), per=5)
    a = open_dataset(
        tmp_path / "site", (32, 32), options=DataOptions(parse_colours(COLOURS), "^([A-Z]+)_")
    )
    s = make_split(a, find_duplicates(a), "grouped", 0, (0.6, 0.2, 0.2))
    assert s.unit == "patient"
    where = {}
    for name in ("train", "val", "test"):
        for i in s.indices(a, name):
            assert where.setdefault(a.patients[i], name) == name
    lesions = {
        n: int(a.masks[s.indices(a, n)].reshape(len(s.indices(a, n)), -1).any(1).sum())
        for n in ("train", "val", "test")
    }
    assert min(lesions["val"], lesions["test"]) >= 3, lesions


def _write_list(path: Path, rows: list[dict], wrapped: bool) -> Path:
    """A CSV datalist, or a JSON one (``{"data": [...]}`` or a bare list)."""
    if path.suffix == ".csv":
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["image", "label", "patient", "class"])
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text(json.dumps({"data": rows} if wrapped else rows))
    return path


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_datalist_reads_the_same_images_and_says_which_row_is_wrong(tmp_path, fmt):
    truth = write_site(tmp_path / "site")
    rows = []
    for stem, cls in truth.items():
        rows.append(
            {
                "image": f"site/images/{stem}.png",
                "label": "" if cls == "normal" else f"site/masks/{stem}.png",
                "patient": stem.split("_")[0],
                "class": cls,
            }
        )
    lst = _write_list(tmp_path / f"list.{fmt}", rows, wrapped=True)
    a = open_dataset(lst, (32, 32))
    b = open_dataset(tmp_path / "site", (32, 32), options=_opts())
    assert a.kind == "datalist" and sorted(set(a.patients)) == sorted(set(b.patients))
    order = [a.ids.index(f"{c}/site/images/{s}") for s, c in truth.items()]
    np.testing.assert_array_equal(a.images[order], b.images)
    np.testing.assert_array_equal(a.masks[order], b.masks)
    rows[3]["image"] = "site/images/GONE_999.png"
    _write_list(lst, rows, wrapped=False)
    with pytest.raises(DataError, match=r"row \d+: .*GONE_999.png not found"):
        open_dataset(lst, (32, 32))


def test_what_does_not_fit_is_one_clear_error(tmp_path, monkeypatch):
    write_site(tmp_path / "site")
    with pytest.raises(DataError, match="patient-pattern.*finds no patient"):
        open_dataset(tmp_path / "site", (32, 32), options=_opts(pattern="^([0-9]+)-"))
    with pytest.raises(DataError, match="unknown colour 'purpleish'"):
        parse_colours("purpleish=benign")
    with pytest.raises(DataError, match="COLOUR=benign|malignant"):
        parse_colours("green=cancer")
    with pytest.raises(DataError, match="none of the --mask-colours"):
        open_dataset(tmp_path / "site", (32, 32), options=_opts(colours="blue=benign"))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "site" / "masks" / "ZED_001.png")
    with pytest.raises(DataError, match="ZED_001.png: mask without image"):
        open_dataset(tmp_path / "site", (32, 32), options=_opts())
    (tmp_path / "site" / "masks" / "ZED_001.png").unlink()
    (tmp_path / "site" / "masks" / "ANNA_000.png").unlink()
    with pytest.raises(DataError, match="ANNA_000.png: image without mask"):
        open_dataset(tmp_path / "site", (32, 32), options=_opts())
    big = tmp_path / "big.csv"
    big.write_text("image,label\n" + "a.png,\n" * 10)
    monkeypatch.setattr("qdev.training.data.layouts.MAX_LIST_BYTES", 16)
    with pytest.raises(DataError, match="datalist over"):
        open_dataset(big, (32, 32))
    (tmp_path / "bad.json").write_text('{"data": 3}')
    with pytest.raises(DataError, match="list of"):
        open_dataset(tmp_path / "bad.json", (32, 32))


def test_a_site_pack_keeps_its_patients_and_hash(tmp_path):
    write_site(tmp_path / "site")
    a = open_dataset(tmp_path / "site", (32, 32), options=_opts(site="x"))
    write_pack(a, tmp_path / "site.npz")
    b = read_pack(tmp_path / "site.npz", (32, 32))
    assert b.patients == a.patients and b.data_hash == a.data_hash and b.ids == a.ids
    # the hash covers the reading options (another colour map reads other classes), not the name
    c = open_dataset(tmp_path / "site", (32, 32), options=_opts(site="another name"))
    d = open_dataset(
        tmp_path / "site", (32, 32), options=_opts(colours="green=malignant,red=benign")
    )
    assert c.data_hash == a.data_hash != d.data_hash


def test_cli_inspect_and_evaluate_the_shipped_bundle_as_deployed(tmp_path):
    from qdev.core.intmodel import IntModel, run_reference
    from qdev.core.maskrule import MaskRule

    truth = write_site(tmp_path / "site", size=(140, 180))
    names = {s: s for s in truth}
    run = CliRunner()
    r = run.invoke(
        cli,
        [
            "data",
            "inspect",
            "--data",
            str(tmp_path / "site"),
            "--mask-colours",
            COLOURS,
            "--patient-pattern",
            PATTERN,
            "--size",
            "32",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Patients: 5" in r.output and "benign" in r.output
    bundle = REPO / "bitstreams" / "KV260" / "quantunet-w8"
    out = tmp_path / "ev"
    r = run.invoke(
        cli,
        [
            "evaluate",
            str(bundle),
            "--data",
            str(tmp_path / "site"),
            "--mask-colours",
            COLOURS,
            "--patient-pattern",
            PATTERN,
            "--site",
            "synthetic",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert (
        ev["subject"]["kind"] == "bundle"
        and ev["site"] == "synthetic"
        and ev["resampled_unit"] == "patient"
    )
    assert ev["figures"]["n_images"] == 30 and ev["figures"]["n_patients"] == 5
    for f in ("evaluation.json", "images.csv", "worst.png", "report.html"):
        assert (out / f).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "images.csv")))
    assert {r_["file"] for r_ in rows} == set(names) and {r_["patient"] for r_ in rows} == {
        "ANNA",
        "BERT",
        "CARL",
        "DORA",
        "EMIL",
    }
    # as deployed means the integer model's codes: recompute two images with the reference
    # executor (core.intmodel.run_reference, the other implementation) and the signed rule
    manifest = json.loads((bundle / "manifest.json").read_text())
    a = open_dataset(tmp_path / "site", (128, 128), options=_opts())
    codes = run_reference(IntModel.load(bundle / "intmodel.npz"), a.images[:2])[..., 0]
    masks = MaskRule.from_manifest(manifest["mask_rule"]).apply(codes)
    by_id = {r_["id"]: r_ for r_ in rows}
    for k in range(2):
        assert int(by_id[a.ids[k]]["pred_px"]) == int(masks[k].sum())
    lesion = [r_ for r_ in rows if r_["class"] != "normal"]
    missed = sum(float(r_["dice"]) < 0.1 for r_ in lesion)
    assert ev["figures"]["missed"] == missed and ev["figures"]["n_lesion"] == len(lesion)
    lo, hi = ev["ci95"]["dice_all"]
    assert lo <= ev["figures"]["dice_all"] <= hi
    # a wrong option is one line, exit 2
    r = run.invoke(
        cli, ["evaluate", str(bundle), "--data", str(tmp_path / "site"), "--patient-pattern", "(["]
    )
    assert (
        r.exit_code == 2
        and r.output.startswith("qdev: ")
        and len(r.output.strip().splitlines()) == 1
    )
    r = run.invoke(
        cli, ["evaluate", str(bundle), "--data", str(tmp_path / "site"), "--split", "test"]
    )
    assert r.exit_code == 2 and "--split-file" in r.output


def test_report_escapes_the_dataset_s_names(tmp_path):
    write_site(tmp_path / "site", patients=("ANNA",), per=3)
    for d in ("images", "masks"):
        (tmp_path / "site" / d / "ANNA_000.png").rename(
            tmp_path / "site" / d / "ANNA_<img src=x onerror=alert(1)>.png"
        )
    r = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(REPO / "bitstreams" / "KV260" / "quantunet-w8"),
            "--data",
            str(tmp_path / "site"),
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_tampered_bundle_is_refused_before_anything_is_read(tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(REPO / "bitstreams" / "KV260" / "quantunet-w8", b)
    z = b / "intmodel.npz"
    data = bytearray(z.read_bytes())
    data[len(data) // 2] ^= 1
    z.write_bytes(bytes(data))
    write_site(tmp_path / "site", patients=("ANNA",), per=3)
    r = CliRunner().invoke(cli, ["evaluate", str(b), "--data", str(tmp_path / "site")])
    assert r.exit_code == 2 and "intmodel.npz does not match" in r.output


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, phantom_busi):
    """A tiny QuantU-Net trained on the BUSI phantom, with its mask rule."""
    from qdev.training.models import ModelConfig
    from qdev.training.postprocess import choose_rule
    from qdev.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("base") / "run"
    train(
        TrainConfig(
            model=ModelConfig(kind="quant", width=2),
            data=str(phantom_busi),
            out=str(out),
            size=32,
            batch_size=8,
            threads=1,
            epochs=2,
            freeze_bits=0.5,
        )
    )
    choose_rule(out)
    return out


def test_adapt_end_to_end_keeps_bits_splits_by_patient_and_decides(tiny_base, tmp_path):
    import torch

    write_site(tmp_path / "site", patients=tuple(f"P{chr(65 + i)}" for i in range(6)), per=5)
    out = tmp_path / "adapted"
    r = CliRunner().invoke(
        cli,
        [
            "adapt",
            str(tiny_base),
            "--data",
            str(tmp_path / "site"),
            "--mask-colours",
            COLOURS,
            "--patient-pattern",
            PATTERN,
            "--out",
            str(out),
            "--epochs",
            "2",
            "--images",
            "8",
            "--replay",
            "0.5",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "site validation" in r.output and ("offered" in r.output)
    d = json.loads((out / "adapt" / "decision.json").read_text())
    assert isinstance(d["offered"], bool) and d["level"] == pytest.approx(0.95)
    assert d["offered"] == (d["gain"] > 0 and d["p_gain"] >= 0.95) and d["criterion"] == "balanced"
    split = json.loads((out / "train" / "split.json").read_text())
    assert len(split["ids"]["train"]) == 8 and split["unit"] == "patient"
    pats = {
        n: {i.split("/")[1].split("_")[0] for i in split["ids"][n]}
        for n in ("train", "val", "test")
    }
    assert (
        not (pats["train"] & pats["val"])
        and not (pats["train"] & pats["test"])
        and not (pats["val"] & pats["test"])
    )
    # the bit widths are the base's: the hardware cost is unchanged
    base = torch.load(tiny_base / "train" / "best.pt", weights_only=False)
    new = torch.load(out / "train" / "best.pt", weights_only=False)
    assert new["bits"]["weight_bits"] == base["bits"]["weight_bits"]
    assert new["bits"]["act_bits"] == base["bits"]["act_bits"]
    m = json.loads((out / "manifest.json").read_text())
    st = m["stages"]
    assert (
        st["adapt"]["status"] == "done"
        and st["adapt"]["inputs"]["site_data_hash"] == d["site_data_hash"]
    )
    assert (
        st["train"]["config"]["finetune_from"].endswith("best.pt")
        and st["train"]["inputs"]["mix_data_hashes"]
    )
    assert st["postprocess"]["status"] == "done"
    c = json.loads((out / "adapt" / "comparison.json").read_text())
    assert set(c) == {"site test patients", "base's test split"}
    assert set(c["site test patients"]) == {"base", "adapted"}
    assert "Research use" in (out / "adapt" / "report.html").read_text()
    # what its bundle will record (and a refusal where the adaptation was not offered)
    from qdev.core.errors import QdevError
    from qdev.training.compile.bundle_build import adaptation_record
    from qdev.training.runs import RunFolder

    if d["offered"]:
        rec = adaptation_record(RunFolder(out))
        assert rec["site_data_hash"] == d["site_data_hash"] and rec["base"] == str(tiny_base)
        assert rec["site_split_sha256"] == st["adapt"]["outputs"]["adapt/site_split.json"]
    else:
        with pytest.raises(QdevError, match="not offered"):
            adaptation_record(RunFolder(out))
    assert adaptation_record(RunFolder(out), allow_unoffered=True)["offered"] == d["offered"]
    assert adaptation_record(RunFolder(tiny_base)) is None
    # the adapted run exports like any other (its integer model is what a bundle ships)
    r = CliRunner().invoke(
        cli,
        [
            "adapt",
            str(tiny_base),
            "--data",
            str(tmp_path / "site"),
            "--mask-colours",
            COLOURS,
            "--patient-pattern",
            PATTERN,
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "already holds a run" in r.output


def test_adapt_refuses_a_site_without_patients(tiny_base, tmp_path):
    write_site(tmp_path / "site", patients=("ANNA",), per=4)
    r = CliRunner().invoke(
        cli,
        ["adapt", str(tiny_base), "--data", str(tmp_path / "site"), "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 2 and "by patient" in r.output
    assert not (tmp_path / "o" / "train").exists()


def test_scanner_augment_steps_do_what_they_say():
    import torch

    from qdev.training.augment import (
        AUGMENT_PRESETS,
        AugmentConfig,
        _calipers,
        _depth_crop,
        _tgc,
        augment_batch,
    )

    g = torch.Generator().manual_seed(0)
    x = torch.full((4, 1, 32, 32), 0.5)
    y = torch.zeros(4, 1, 32, 32)
    y[:, :, 10:20, 8:24] = 1
    x = torch.where(y > 0, torch.tensor(0.1), x)
    off = AugmentConfig(hflip=0, affine=0, intensity=0)
    # depth crop: a zoom on the top rows, image and mask alike (the lesion grows, stays aligned)
    xc, yc = _depth_crop(x, y, g, AugmentConfig(depth_keep=(0.5, 0.5)))
    assert torch.equal(yc > 0, xc < 0.3) and yc.sum() > y.sum()
    # time-gain curve: one gain per row (depth), not per column
    xt = _tgc(torch.full((2, 1, 32, 32), 0.5), g, AugmentConfig(tgc_range=(0.5, 1.5)))
    assert torch.allclose(xt.std(dim=3), torch.zeros(2, 1, 32)) and xt.std(dim=2).max() > 0.01
    # calipers: bright crosses, nothing darkened
    xk = _calipers(x, g, off)
    assert (xk >= x).all() and (xk == 1).any()
    # the preset runs end to end and keeps masks binary
    a, b = augment_batch(x, y, torch.Generator().manual_seed(1), AUGMENT_PRESETS["scanner"])
    assert (
        a.shape == x.shape
        and set(b.unique().tolist()) <= {0.0, 1.0}
        and 0 <= float(a.min()) <= float(a.max()) <= 1
    )


def test_balanced_criterion_weights_and_checkpoint_score():
    from qdev.training.postprocess import criterion_weights
    from qdev.training.trainer import selection_score

    truth = np.zeros((10, 4, 4), bool)
    truth[:3, 1, 1] = True  # 3 lesion images, 7 normal scans
    d = np.array([0.5, 0.7, 0.9] + [1, 1, 0, 1, 1, 1, 0], float)
    w = criterion_weights(truth, "balanced")
    assert w.mean() == pytest.approx(1.0)
    assert (d * w).mean() == pytest.approx(0.5 * (d[:3].mean() + d[3:].mean()))
    assert np.array_equal(criterion_weights(truth, "all"), np.ones(10))
    m = {
        "n_lesion_images": 3,
        "dice_lesion": 0.7,
        "dice": 0.6,
        "per_class": {"normal": {"n": 7, "dice": 0.4}},
    }
    assert selection_score(m, "lesion") == 0.7 and selection_score(m, "balanced") == pytest.approx(
        0.55
    )
