"""P5: scoring one trained model the way the evaluate stage does, against scoring it with a whole
forward pass per setting.

One Concat model (the params' mini model, seed 0, untrained: timing only) on P1's test split
(frames resized to ``--frame-size`` as P3 does, tiled to ``--samples`` clips). The settings are
those of one seed in the evaluate stage: plain accuracy, each modality dropped with each
``robustness.drop_probs``, the joint grid, and the 4 Shapley coalitions.

- per setting: ``accuracy_with_drops`` on the stored split for every setting, so that each one
  runs the whole model (the encoder pooling every full-size spectrogram batch again);
- encoded once: the split pooled to the encoder's input size once (``EvalInputs``), encoded once
  (``encoded_split``), every setting running only the fusion head.

Both give the same accuracies (checked); interleaved rounds, median, ratio per setting / encoded.

Usage: python benchmarks/p5_evaluate.py --work build/bench/p1
"""

from __future__ import annotations

import time
from pathlib import Path

from common import Measurement, median
from p3_step_time import shrink_frames, tiled


def settings(cfg: dict, modalities: list[str]) -> list[dict]:
    """Every drop setting the evaluate stage scores for one seed of a two-modality model."""
    from mmbalance.evaluate.shapley import coalitions

    probs, joint = [float(p) for p in cfg["drop_probs"]], cfg.get("joint") or {}
    out = [{}] + [{m: p} for m in modalities for p in probs]
    out += [{modalities[0]: float(f), modalities[1]: float(v)} for f in joint.get("fixed_probs", []) for v in joint.get("varied_probs", [])]
    out += [{m: 1.0 for m in modalities if m not in kept} for kept in coalitions(modalities)]
    return out


def run(work: Path, params: dict, repeats: int, samples: int = 256, frame_size: int = 32) -> list[Measurement]:
    """Interleaved rounds of both ways of scoring the same model on the same split."""
    import torch

    from mmbalance.evaluate.robustness import EvalInputs, accuracy_with_drops, encoded_split
    from mmbalance.params import resolve_run
    from mmbalance.shards import read_index
    from mmbalance.train.data import load_split
    from mmbalance.train.run import build_run, seed_everything

    torch.set_num_threads(int(params["train"].get("num_threads", 1)))
    shards = work / "shards"
    info = read_index(shards)
    test = tiled(shrink_frames(load_split(shards, "test", list(info["modalities"])), frame_size), samples)
    name, cfg, model_cfg = resolve_run(params, "concat")
    seed_everything(0)
    method, model = build_run(info, name, cfg, model_cfg, 1)
    drops, batch = settings(params["robustness"], list(model.modalities)), int(params["robustness"].get("batch_size", 256))

    def per_setting() -> list[float]:
        return [accuracy_with_drops(model, method, test, d, 0, batch) for d in drops]

    def encoded_once() -> list[float]:
        data = EvalInputs(test, info).for_model(model_cfg)
        enc = encoded_split(model, data, batch)
        return [accuracy_with_drops(model, method, data, d, 0, batch, enc) for d in drops]

    times: dict[str, list[float]] = {"per setting": [], "encoded once": []}
    for r in range(repeats):
        order = [("per setting", per_setting), ("encoded once", encoded_once)]
        accs = {}
        for label, fn in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            accs[label] = fn()
            times[label].append(time.perf_counter() - t)
        if accs["per setting"] != accs["encoded once"]:
            raise AssertionError(f"the two ways of scoring disagree: {accs}")
    slow, fast = median(times["per setting"]), median(times["encoded once"])
    note = (f"{len(drops)} settings of one seed (plain, drops, joint grid, Shapley coalitions), {samples} test clips, "
            f"frames {frame_size}², median of {repeats} interleaved rounds; same accuracies")
    return [Measurement("P5", "evaluate one model: a whole forward pass per setting", slow * 1000, "ms", 1.0, "× per setting",
                        None, note),
            Measurement("P5", "evaluate one model: pooled and encoded once (evaluate stage)", fast * 1000, "ms", fast / slow,
                        "× per setting", None, "")]


if __name__ == "__main__":
    import argparse

    from common import bench_params

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="P1's work folder (its shards/)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", type=Path, default=Path("profiles/fullsize.yaml"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for m in run(args.work, bench_params(args.params, args.profile), args.repeats):
        print(f"{m.name}: {m.value:.2f} {m.unit} (ratio {m.ratio:.3f})")
