"""The seed methods' diagnostics: GMM-AL's end-of-run content and the report's figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmbalance.evaluate import curves as run_curves
from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.gmm_al import fit_gmm
from mmbalance.report import load_results
from mmbalance.report.diagnostics import diagnostics_section, gaussian_density, render_diagnostics
from mmbalance.report.plots import load_curves

# gaps away from the 0.05-wide bin edges of [−1, 1]: bins 1, 9, 20 (×3), 29, 30 and 39 (1.0 is
# the last edge, counted in the last bin)
GAPS = np.array([-0.93, -0.51, 0.01, 0.01, 0.03, 0.48, 0.52, 1.0])


class _Trainer:
    """The two things GMM-AL's epoch hook asks of the trainer."""

    def reset_optimizer(self, **overrides) -> None:
        pass


def test_gmm_al_diagnostics_by_hand(monkeypatch):
    method = build_method("gmm_al", {"warmup_epochs": 2}, MethodContext(["audio", "visual"], 6, 5))
    assert method.diagnostics()["fits"] == [] and method.diagnostics()["histograms"] == {}
    later = GAPS * 0.5
    for epoch, gaps in ((2, GAPS), (3, GAPS), (4, later)):
        monkeypatch.setattr(method, "collect_gaps", lambda trainer, g=gaps: g)
        method.on_epoch_start(epoch, _Trainer())
    diag = json.loads(json.dumps(method.diagnostics()))  # JSON-serialisable as stored in results.json
    assert diag["order"] == ["audio", "visual"] and diag["warmup_epochs"] == 2
    first, last = diag["histograms"]["first"], diag["histograms"]["last"]
    assert (first["epoch"], last["epoch"]) == (2, 4)
    assert first["edges"] == pytest.approx(np.linspace(-1, 1, 41).tolist())
    want = [0] * 40
    for b in (1, 9, 20, 20, 20, 29, 30, 39):
        want[b] += 1
    assert first["counts"] == want
    # halved gaps: −0.465 → 10, −0.255 → 14, 0.005/0.005/0.015 → 20, 0.24 → 24, 0.26 → 25, 0.5 → 30
    assert np.flatnonzero(last["counts"]).tolist() == [10, 14, 20, 24, 25, 30] and sum(last["counts"]) == 8
    assert [f["epoch"] for f in diag["fits"]] == [2, 3, 4]
    fit = diag["fits"][0]
    assert fit["n"] == 8 and fit["gap_mean"] == pytest.approx(GAPS.mean())
    ref = fit_gmm(GAPS, 0)
    assert (fit["weights"], fit["means"], fit["vars"]) == (ref["weights"], ref["means"], ref["vars"])
    assert sum(fit["weights"]) == pytest.approx(1.0) and abs(fit["means"][0]) <= abs(fit["means"][1])
    # the diagnostics survive a checkpoint round trip (a resumed run still reports the first fit)
    again = build_method("gmm_al", {"warmup_epochs": 2}, MethodContext(["audio", "visual"], 6, 5))
    again.load_state_dict(method.state_dict())
    assert again.diagnostics() == method.diagnostics()


def test_gaussian_density_by_hand():
    # 0.5·N(0; 0, 0.25) = 0.5/√(2π·0.25) = 0.398942
    assert gaussian_density([0.0, 0.5], 0.5, 0.0, 0.25) == pytest.approx([0.398942, 0.398942 * math.exp(-0.5)], rel=1e-5)


def _run(root: Path, name: str, series: dict[str, list[float]], diagnostics: dict | None = None) -> Path:
    """A fake run folder: results.json (2 seeds) and curves.json with the given series per seed."""
    run = root / "results" / "cremad" / name
    seeds, curves = {}, {}
    for s in (0, 1):
        seeds[str(s)] = {"test": {"acc": 0.6, "probe_acc": {"audio": 0.5, "visual": 0.3}}, "epochs": 4, "wall_s": 1.0,
                         **({"diagnostics": diagnostics} if diagnostics else {})}
        curves[str(s)] = {key: {"step": list(range(len(values))), "value": [v + 0.01 * s for v in values]}
                          for key, values in series.items()}
    run_curves.write(run / "curves.json", curves)
    (run / "results.json").write_text(json.dumps({"dataset": "cremad", "method": name, "profile": "mini",
                                                  "modalities": ["audio", "visual"], "seeds": seeds}))
    return run / "results.json"


def _probes(split: str) -> dict[str, list[float]]:
    return {f"{split}/acc": [0.3, 0.5, 0.6, 0.7], f"{split}/probe_acc_audio": [0.3, 0.5, 0.6, 0.6],
            f"{split}/probe_acc_visual": [0.2, 0.2, 0.3, 0.4]}


def test_render_diagnostics_from_fixture(tmp_path):
    rho = {"train/rho_audio": [1.0, 2.0, 1.5, 1.2], "train/rho_visual": [1.0, 0.5, 0.7, 0.8]}
    hist = {"edges": np.linspace(-1, 1, 41).tolist(), "counts": [0] * 18 + [5, 20, 30, 10] + [0] * 10 + [4, 6] + [0] * 6}
    gmm = {"order": ["audio", "visual"], "warmup_epochs": 2,
           "fits": [{"epoch": e, "n": 75, "gap_mean": 0.1, "weights": [0.8, 0.2], "means": [0.01, 0.65 - 0.1 * e],
                     "vars": [0.004, 0.01]} for e in (2, 3)],
           "histograms": {"first": {"epoch": 2, **hist}, "last": {"epoch": 3, **hist}}}
    paths = [
        _run(tmp_path, "gmm_al", {**_probes("val"), **_probes("test"), "train/gmm_mu0": [0.0, 0.0]}, gmm),
        _run(tmp_path, "concat", {**_probes("val"), **_probes("test"), **rho}),
        _run(tmp_path, "opm", {**rho, "train/q_audio": [0.0, 0.6, 0.5, 0.4], "train/q_visual": [0.0] * 4,
                               "train/dropped_audio": [0.0, 0.55, 0.5, 0.45], "train/dropped_visual": [0.0] * 4}),
        _run(tmp_path, "arl", {"train/arl_d_ratio_audio": [1.5, 3.0, 2.0, 1.0], "train/arl_q_ratio_audio": [1.0, 2.0, 2.5, 1.1],
                               "train/arl_a_audio": [0.2, 0.8, 0.6, 0.5], "train/arl_a_visual": [0.8, 0.2, 0.4, 0.5]}),
        _run(tmp_path, "iprm", {"train/lambda_audio_vs_visual": [0.5, 0.45, 0.4, 0.38],
                                "train/omega_audio_vs_visual": [0.3, 0.35, 0.3, 0.32]}),
        # ARL Fig. 1: the unscaled and the "a*5" runs' ratios, the scaled run's accuracy
        _run(tmp_path, "grad_scale__none", {"train/arl_d_ratio_audio": [1.5, 2.5, 3.0, 3.2],
                                            "train/arl_q_ratio_audio": [1.0, 1.2, 1.3, 1.3]}),
        _run(tmp_path, "grad_scale__audio5", {**_probes("test"), "train/arl_d_ratio_audio": [1.5, 2.0, 1.8, 1.6],
                                              "train/arl_q_ratio_audio": [1.0, 1.3, 1.4, 1.4],
                                              "train/grad_scale_audio": [5.0] * 4, "train/grad_scale_visual": [1.0] * 4}),
    ]
    runs = {r.run: r for r in load_results(paths)}
    curves = {name: load_curves(Path(r.source).parent) for name, r in runs.items()}
    out = tmp_path / "reports"
    drawn = render_diagnostics("cremad", runs, curves, out / "plots", out)
    links = {d.name: d.path for d in drawn}
    assert links == {name: f"plots/cremad/{name}.png"
                     for name in ("gmm_gap", "gmm_probes", "rho", "opm_q", "arl", "arl_fig1", "iprm", "acting")}
    # drawn for CREMA-D only (the paper's dataset): another dataset has no ARL Fig. 1 entry at all
    other = render_diagnostics("ave", runs, curves, out / "plots", out)
    assert "arl_fig1" not in {d.name for d in other}
    for link in links.values():
        with Image.open(out / link) as img:
            img.verify()  # a complete, valid PNG
        with Image.open(out / link) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200
    section = diagnostics_section("arl", drawn)
    assert "![" in section and "(plots/cremad/arl.png)" in section


def test_missing_runs_read_not_run(tmp_path):
    # only concat ran: nothing is drawn, the pages say why, and no broken image links
    paths = [_run(tmp_path, "concat", {**_probes("test"), "train/rho_audio": [1.0, 2.0, 1.5, 1.2]})]
    runs = {r.run: r for r in load_results(paths)}
    curves = {name: load_curves(Path(r.source).parent) for name, r in runs.items()}
    out = tmp_path / "reports"
    drawn = render_diagnostics("cremad", runs, curves, out / "plots", out)
    assert all(d.path is None for d in drawn) and not list(out.rglob("*.png"))
    section = diagnostics_section("gmm_adaptive_loss", drawn)
    assert "![" not in section and "- CREMA-D: not run (no `gmm_al` results)." in section
    # ρ (Fig. 5) and OPM's q (Fig. 7) are Kinetics-Sounds figures in the paper: with none of their
    # runs, CREMA-D's page leaves them out and Kinetics-Sounds' page says they were not run
    assert diagnostics_section("opm_ogm", drawn) is None
    ks = render_diagnostics("kinetics_sounds", runs, curves, out / "plots", out)
    assert "(paper Fig. 5): not run (no `opm`, `ogm`, `opm_ogm` results)" in diagnostics_section("opm_ogm", ks)
    assert diagnostics_section("opm_ogm", []) is None
    # a gmm_al run whose results lack the diagnostics (older code): its probe curves are drawn, the histogram is not
    _run(tmp_path, "gmm_al", _probes("test"))
    runs = {r.run: r for r in load_results(paths + [tmp_path / "results" / "cremad" / "gmm_al" / "results.json"])}
    curves = {name: load_curves(Path(r.source).parent) for name, r in runs.items()}
    drawn = {d.name: d for d in render_diagnostics("cremad", runs, curves, out / "plots", out)}
    assert drawn["gmm_probes"].path and drawn["gmm_gap"].path is None and "no data in the `gmm_al` results" in drawn["gmm_gap"].reason


def test_runs_named_by_backbone_draw_under_their_plain_names():
    """AVE localisation / MUSIC-AVQA name every run ``<run>__<backbone>``: the figures of ``opm``
    etc. draw the runs of Concat's first backbone; a dataset with Concat itself is left as it is."""
    from mmbalance.report.diagnostics import backbone_runs

    data = {n: n for n in ("concat__avsd", "concat__panoavqa", "opm__avsd", "opm__panoavqa", "ogm__panoavqa")}
    out, backbone = backbone_runs(data)
    assert backbone == "avsd" and out["concat"] == "concat__avsd" and out["opm"] == "opm__avsd"
    assert "ogm" not in out and out["ogm__panoavqa"] == "ogm__panoavqa"
    plain = {"concat": "concat", "iprm__no_ema": "iprm__no_ema"}
    assert backbone_runs(plain) == (plain, "")
