"""Missing-modality robustness of trained models (the protocol of the OPM/OGM paper, Wei et al.,
"On-the-fly Modulation for Balanced Multimodal Learning", TPAMI 2024, §4.4.3 and Fig. 6).

At test time each sample's features of modality m are set to zero with probability p
(``model(inputs, keep={m: mask})``), and the test accuracy of the method's prediction is
measured, for each p of a list and each modality in turn.  Masks come from one uniform draw
per (modality, sample) from a seeded generator, so a sample dropped at p is also dropped at any
larger p (curves over p are nested, not independent noise), p = 0 keeps everything and p = 1
drops every sample.

The paper's Fig. 6 drops both modalities of a test sample at once, independently: the first
modality (audio on Kinetics-Sounds, RGB on UCF-101) with a fixed probability (10 % or 20 %, one
panel each) and the second with a probability from 10 % to 30 % (the x axis); dropped data is set
to 0. ``joint_sweep`` computes that grid; ``sweep`` (one modality at a time, p from 0 to 1) is an
extension kept beside it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from mmbalance.models.model import mask_features
from mmbalance.train.data import SplitData, batches, pool_spectrograms

SEED_FILE = re.compile(r"^seed(-?\d+)\.pt$")


def uniform_draws(n: int, modalities: Sequence[str], seed: int) -> dict[str, torch.Tensor]:
    """One U[0, 1) draw per (modality, sample), each [n], from a generator seeded with ``seed``
    (drawn in ``modalities`` order, so a modality's draws do not depend on which p is asked)."""
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(len(modalities), n, generator=gen, dtype=torch.float64)
    return {m: u[i] for i, m in enumerate(modalities)}


def keep_masks(draws: Mapping[str, torch.Tensor], drop: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """[n] float masks, 0 where a sample's modality is dropped (draw < p), for the modalities in ``drop``."""
    out = {}
    for m, p in drop.items():
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"drop probability for {m!r} must lie in [0, 1]; got {p}")
        out[m] = (draws[m] >= float(p)).float()
    return out


@torch.no_grad()
def encoded_split(model, data: SplitData, batch_size: int = 256) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """(features {modality: [rows, D_m]}, labels [rows]) of each evaluation batch of ``data``:
    the encoders' share of the forward pass. A dropped modality's features are zeroed after the
    encoders (``model(inputs, keep=...)``), so every drop setting and coalition of one model
    reuses them and runs only the fusion head. Rows are samples, or segments for event
    localisation."""
    data = data.select(model.modalities)
    model.eval()
    return [(model.encode(inputs), labels)
            for inputs, labels in batches(data, batch_size, train=False, gen=torch.Generator().manual_seed(0))]


@torch.no_grad()
def accuracy_with_drops(model, method, data: SplitData, drop: Mapping[str, float], seed: int = 0,
                        batch_size: int = 256, encoded: list | None = None) -> float:
    """Test accuracy of ``method.predict`` when modality m's features are zeroed per sample with
    probability ``drop[m]`` (modalities not in ``drop`` are kept); for event localisation a row,
    and so a drop, is one segment.

    ``data``: the split, holding at least the model's modalities (evaluation frames are fixed);
    ``encoded``: its ``encoded_split`` for this model, when already computed (then ``data`` is
    not read). Equal to running ``model(inputs, keep=masks)`` on every batch.
    Raises ValueError for a modality the model does not take as input.
    """
    unknown = sorted(set(drop) - set(model.modalities))
    if unknown:
        raise ValueError(f"cannot drop {unknown}: the model's modalities are {model.modalities}")
    if encoded is None:
        encoded = encoded_split(model, data, batch_size)
    rows = sum(len(labels) for _, labels in encoded)
    keep = keep_masks(uniform_draws(rows, model.modalities, seed), drop)
    model.eval()
    correct, start = 0, 0
    for feats, labels in encoded:
        b = len(labels)
        out = model.fuse(mask_features(feats, {m: k[start:start + b] for m, k in keep.items()}))
        correct += int((method.predict(out).argmax(dim=1) == labels).sum())
        start += b
    return correct / rows


def sweep(model, method, data: SplitData, drop_probs: Sequence[float], seed: int = 0,
          batch_size: int = 256, encoded: list | None = None) -> dict:
    """Plain accuracy and, for each of the model's modalities in turn, accuracy at each p
    (the split encoded once: ``encoded_split``).

    Returns ``{"plain_acc": float, "drop": {modality: [acc at p for p in drop_probs]}}``.
    """
    enc = encoded if encoded is not None else encoded_split(model, data, batch_size)
    return {
        "plain_acc": accuracy_with_drops(model, method, data, {}, seed, batch_size, enc),
        "drop": {m: [accuracy_with_drops(model, method, data, {m: p}, seed, batch_size, enc) for p in drop_probs]
                 for m in model.modalities},
    }


def joint_sweep(model, method, data: SplitData, fixed_probs: Sequence[float], varied_probs: Sequence[float],
                seed: int = 0, batch_size: int = 256, encoded: list | None = None) -> dict | None:
    """Fig. 6 of the OPM/OGM paper: accuracy with the model's first modality dropped with each
    probability of ``fixed_probs`` and its second, at the same time and independently per sample,
    with each of ``varied_probs``. None for a model with fewer than two modalities.

    Returns ``{"fixed": m1, "varied": m2, "acc": [[acc at (pf, pv) for pv] for pf]}``."""
    if len(model.modalities) < 2:
        return None
    fixed, varied = model.modalities[0], model.modalities[1]
    enc = encoded if encoded is not None else encoded_split(model, data, batch_size)
    acc = [[accuracy_with_drops(model, method, data, {fixed: pf, varied: pv}, seed, batch_size, enc) for pv in varied_probs]
           for pf in fixed_probs]
    return {"fixed": fixed, "varied": varied, "acc": acc}


class EvalInputs:
    """The test split as each trained model reads it: every spectrogram average-pooled once to
    the input size of the model's encoder, in the train stage's chunks (``load_split`` pools
    the same way at load), so that the encoder's own pooling is the identity. Pooled splits are
    kept per input size; a model without one reads the stored arrays. Pooling each
    [256, 1, 257, 1004] test batch in the encoder again for every drop setting and coalition
    took most of an evaluation's time on the 10-s datasets."""

    def __init__(self, data: SplitData, info: dict) -> None:
        self.data, self.info = data, info
        self._by_size: dict[str, SplitData] = {}

    def for_model(self, model_cfg: Mapping) -> SplitData:
        """The split with its spectrograms pooled as the model with ``model_cfg`` reads them."""
        from mmbalance.train.run import pool_sizes  # imported here, as build_run in load_trained

        sizes = {m: s for m, s in pool_sizes(self.info, dict(model_cfg)).items() if s and m in self.data.arrays}
        key = json.dumps(sizes, sort_keys=True)
        if key not in self._by_size:
            arrays = dict(self.data.arrays)
            for m, size in sizes.items():
                stored = self.data.arrays[m]  # [N, 1, F, T] as stored (unpooled)
                arrays[m] = stored if tuple(stored.shape[-2:]) == tuple(size) else pool_spectrograms(list(stored[:, 0].numpy()), size)
            self._by_size[key] = replace(self.data, arrays=arrays)
        return self._by_size[key]


def eval_inputs(data: SplitData | EvalInputs, info: dict) -> EvalInputs:
    """``data`` as ``EvalInputs`` (a split is wrapped; pooled splits are then kept by the wrapper)."""
    return data if isinstance(data, EvalInputs) else EvalInputs(data, info)


def seed_checkpoints(model_dir: Path) -> list[tuple[int, Path]]:
    """``seed<k>.pt`` files of a run's model folder, by seed."""
    found = []
    for path in model_dir.iterdir() if model_dir.is_dir() else ():
        match = SEED_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_trained(path: Path, info: dict):
    """Rebuild (method, model) from a ``seed<k>.pt`` saved by the train stage, weights loaded.

    The file holds ``state``, ``method``, ``method_cfg``, ``model_cfg``, ``epochs`` (and
    ``method_state`` when the train stage saves it: state a method needs at test time).
    """
    from mmbalance.train.run import build_run

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    missing = [k for k in ("state", "method", "method_cfg", "model_cfg", "epochs") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a model saved by the train stage (missing {missing})")
    method, model = build_run(info, ckpt["method"], ckpt["method_cfg"], ckpt["model_cfg"], int(ckpt["epochs"]))
    model.load_state_dict(ckpt["state"])
    if ckpt.get("method_state") is not None:
        method.load_state_dict(ckpt["method_state"])
    return method, model, ckpt


def trained_seeds(model_dir: Path, info: dict):
    """Yield ``(seed, method, model, checkpoint)`` for every ``seed<k>.pt`` of a run's model
    folder, in seed order; a folder without any is an error naming it."""
    checkpoints = seed_checkpoints(model_dir)
    if not checkpoints:
        raise FileNotFoundError(f"{model_dir}: no seed<k>.pt model files")
    for k, path in checkpoints:
        yield (k, *load_trained(path, info))


def evaluate_run(model_dir: Path, info: dict, data: SplitData | EvalInputs, drop_probs: Sequence[float], seed: int = 0,
                 batch_size: int = 256, joint: Mapping | None = None) -> dict:
    """Sweep every seed's model of one run; masks use ``seed`` + the model's seed.

    Returns ``{"method", "modalities", "method_state", "seeds": {k: sweep}, "wall_s"}``;
    ``method_state`` is "absent" when the checkpoints lack it (test-time state at defaults).
    """
    start, inputs = time.perf_counter(), eval_inputs(data, info)
    out: dict = {"seeds": {}}
    for k, method, model, ckpt in trained_seeds(model_dir, info):
        data = inputs.for_model(ckpt["model_cfg"])
        enc = encoded_split(model, data, batch_size)  # shared by the sweep and the joint grid
        out.update(method=ckpt["method"], modalities=list(model.modalities),
                   method_state="saved" if ckpt.get("method_state") is not None else "absent")
        out["seeds"][str(k)] = sweep(model, method, data, drop_probs, seed + k, batch_size, enc)
        if joint:
            grid = joint_sweep(model, method, data, joint["fixed_probs"], joint["varied_probs"], seed + k, batch_size, enc)
            if grid is not None:
                out["seeds"][str(k)]["joint"] = grid
    out["wall_s"] = round(time.perf_counter() - start, 3)
    return out


def evaluate_runs(model_dirs: Iterable[Path], runs: Sequence[str], info: dict, data: SplitData | EvalInputs,
                  drop_probs: Sequence[float], seed: int = 0, batch_size: int = 256, log=print,
                  joint: Mapping | None = None) -> dict:
    """Evaluate the runs named in ``runs`` (all of ``model_dirs`` when empty), a run being a
    model folder's name.  Runs asked for without a folder or model files are listed in
    ``missing`` (and logged), not dropped silently."""
    dirs = {Path(d).name: Path(d) for d in model_dirs}
    wanted = list(runs) if runs else sorted(dirs)
    data = eval_inputs(data, info)
    results, missing = {}, []
    for run in wanted:
        if run not in dirs or not seed_checkpoints(dirs[run]):
            log(f"robustness: no trained models for run {run!r} (looked in {sorted(str(d) for d in dirs.values())})")
            missing.append(run)
            continue
        results[run] = evaluate_run(dirs[run], info, data, drop_probs, seed, batch_size, joint)
    return {"runs": results, "missing": missing}
