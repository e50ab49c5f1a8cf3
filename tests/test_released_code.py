"""The paper's formula beside the released code (report/released_code.py): which pairs each paper
page shows, and the paired comparison against hand-computed values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmbalance.evaluate.predictions import Predictions, save_predictions
from mmbalance.report.papers import PaperIndex, PaperNumber, load_config, parse_variants
from mmbalance.report.released_code import released_code_section, variants_for
from mmbalance.report.stats import StatsConfig, stats_by_dataset
from mmbalance.report.tables import RunSummary

ROOT = Path(__file__).resolve().parents[1]
CFG = StatsConfig(bootstrap=200, seed=0)
N = 40  # test clips


def _write_run(root, run: str, correct_per_seed: list[np.ndarray], dataset: str = "cremad") -> RunSummary:
    """A results folder with per-seed predictions whose correctness is ``correct_per_seed``."""
    folder = root / dataset / run
    keys = np.array([f"clip{i:03d}" for i in range(N)])
    labels = np.zeros(N, dtype=np.int64)
    for seed, correct in enumerate(correct_per_seed):
        logits = np.where(correct[:, None], [[2.0, 0.0]], [[0.0, 2.0]]).astype(np.float32)  # [N, 2]
        probes = {m: logits.astype(np.float16) for m in ("audio", "visual")}
        save_predictions(folder / "predictions" / f"seed{seed}.npz", Predictions(keys, labels, logits, probes))
    (folder / "results.json").write_text(json.dumps({}))
    accs = [float(c.mean()) for c in correct_per_seed]
    return RunSummary(dataset=dataset, method=run.split("__")[0], fusion=None, profile="mini", selection=None,
                      modalities=["audio", "visual"], n_seeds=len(accs), metrics={"acc": accs}, run=run,
                      source=str(folder / "results.json"))


def _iprm_page(root, runs: list[RunSummary]) -> tuple[str, list[str]]:
    """The IPRM page's section for ``runs`` (results under ``root``; only ``iprm`` is in this
    profile's CREMA-D list; the paper prints 84.27 on CREMA-D) and the cells of its IPRM row."""
    stats = stats_by_dataset([(r.dataset, r.run, root / r.dataset / r.run) for r in runs], CFG)
    config = load_config()
    index = PaperIndex([PaperNumber("iprm", 1, "CREMA-D", "IPRM", "acc", "84.27")], config)
    text = released_code_section("iprm", config, runs, stats, CFG, index, {"cremad": ["iprm"]})
    row = next(line for line in text.splitlines() if line.startswith("| IPRM |"))
    return text, [c.strip() for c in row.strip("|").split("|")]


def test_every_variant_names_a_run_of_params_and_pages_get_their_own():
    config = load_config()
    assert {v.code_run for v in config.released_code} == {"ogm_code", "opm_code", "arl_code", "iprm__code", "mla__code"}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    full = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())["benchmark"]
    for v in config.released_code:  # defined, and trained by the full profile beside its paper run
        assert v.code_run in params["methods"] and v.paper_run in params["methods"]
        assert any(v.code_run in runs and v.paper_run in runs for runs in full.values()), v.code_run
    assert [v.code_run for v in variants_for("opm_ogm", config)] == ["ogm_code", "opm_code"]
    assert [v.code_run for v in variants_for("iprm", config)] == ["iprm__code", "mla__code"]  # MLA is an IPRM baseline
    assert "arl_code" not in [v.code_run for v in variants_for("gmm_adaptive_loss", config)]


def test_a_variant_without_a_key_is_an_error_naming_the_file():
    with pytest.raises(ValueError, match=r"papers\.yaml: released_code entry .* lacks \['differs'\]"):
        parse_variants([{"paper_run": "iprm", "code_run": "iprm__code", "code": "main_av.py"}], "papers.yaml")


def test_section_pairs_the_runs_on_the_same_clips(tmp_path):
    # formula right on clips 0-29 in both seeds; the code also right on 30-32 (seed 0) and 30-32 (seed 1):
    # 6 discordant pairs, all in the code's favour → Δ = 3/40 = +7.50 points, exact McNemar
    # p = 2 · 0.5⁶ = 0.03125
    formula = np.arange(N) < 30
    code = np.arange(N) < 33
    runs = [_write_run(tmp_path, "iprm", [formula, formula]), _write_run(tmp_path, "iprm__code", [code, code])]
    # also on a dataset where the paper prints no IPRM figure: left out of the page
    runs += [_write_run(tmp_path, r, [code, code], "ave") for r in ("iprm", "iprm__code")]
    text, cells = _iprm_page(tmp_path, runs)
    assert cells[1] == "CREMA-D"
    assert cells[2].startswith("75.00 [") and cells[3].startswith("82.50° [")  # ° : not in this profile's list
    assert cells[4].startswith("+7.50 [")
    assert cells[5] == "0.031" and cells[6] == "better"
    assert cells[7] == "84.27 (Tab. 1)"
    assert "| IPRM | AVE |" not in text and "Holm-corrected over the 1 comparison of" in text
    assert "`mla__code`" in text and "No results: the `full` profile trains it" in text  # MLA: no results here


def test_no_section_for_a_paper_without_variants():
    config = dataclasses.replace(load_config(), released_code=())
    assert released_code_section("iprm", config, [], {}, CFG) == ""


def test_runs_on_other_clips_are_shown_unpaired(tmp_path):
    # the quick profile retrains `iprm` on its smaller data, beside the committed `iprm__code`
    # trained on the default data: other test clips, so no paired test (and no crash)
    runs = [_write_run(tmp_path, "iprm", [np.arange(N) < 30]), _write_run(tmp_path, "iprm__code", [np.arange(N) < 33])]
    other = tmp_path / "cremad" / "iprm__code" / "predictions" / "seed0.npz"
    p = Predictions(np.array([f"other{i:03d}" for i in range(N)]), np.zeros(N, dtype=np.int64),
                    np.zeros((N, 2), dtype=np.float32), {"audio": np.zeros((N, 2), dtype=np.float16)})
    save_predictions(other, p)
    _, cells = _iprm_page(tmp_path, runs)
    assert cells[3] == "82.50° ± 0.00" and cells[4] == "not paired: other test clips" and cells[5] == "—"
