"""Training interrupted after an epoch and restarted from its checkpoint ends with the same numbers."""

import pytest
import torch

from mmbalance.train import loop
from mmbalance.train.loop import fit

from test_methods import TRAIN, make, splits_for


def _fit(name, checkpoint=None):
    method, model, mods = make(name)
    return fit(model, method, splits_for(mods), {**TRAIN, "epochs": 4}, seed=0, name=name, checkpoint=checkpoint)


@pytest.mark.parametrize("name", ["concat", "ogm_ge"])
def test_resume_matches_uninterrupted(name, tmp_path, monkeypatch):
    full = _fit(name)
    ckpt = tmp_path / "ckpt.pt"
    calls = {"n": 0}
    real = loop.Trainer.train_epoch

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill during epoch 2")
        return real(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        _fit(name, ckpt)
    monkeypatch.setattr(loop.Trainer, "train_epoch", real)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    resumed = _fit(name, ckpt)
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]
    assert resumed["eval_samples"] == full["eval_samples"]


def test_resume_after_the_last_epoch_keeps_time_and_counts(tmp_path):
    """A run restarted once every epoch is done (e.g. ``dvc repro -f`` with its checkpoints kept)
    trains nothing, and still reports the first process's training time and evaluated counts."""
    ckpt = tmp_path / "ckpt.pt"
    first = _fit("concat", ckpt)
    again = _fit("concat", ckpt)
    assert again["history"] == first["history"] and again["test"] == first["test"]
    assert again["eval_samples"] == first["eval_samples"] and first["eval_samples"]
    assert again["wall_s"] >= torch.load(ckpt, weights_only=False)["wall_s"] > 0


def test_checkpoint_key_changes_with_rewritten_shards(tmp_path):
    # regenerated data may keep index.json unchanged (same clips and counts, other pixels): the
    # shard files' stamps are part of the key, so such a checkpoint is never resumed
    import os

    from mmbalance.train.run import fingerprint, shard_stamp

    info = {"splits": {"train": {"shards": ["train-000000.tar"]}, "test": {"shards": ["test-000000.tar"]}}}
    for name in ("train-000000.tar", "test-000000.tar"):
        (tmp_path / name).write_bytes(b"x" * 10)
        os.utime(tmp_path / name, ns=(1_000_000_000, 1_000_000_000))
    before = fingerprint(info, shard_stamp(tmp_path, info), "concat", {}, {}, {})
    assert fingerprint(info, shard_stamp(tmp_path, info), "concat", {}, {}, {}) == before  # a resume: same files
    assert [s[0] for s in shard_stamp(tmp_path, info)] == ["test-000000.tar", "train-000000.tar"]
    (tmp_path / "train-000000.tar").write_bytes(b"y" * 10)  # rewritten, same size
    assert fingerprint(info, shard_stamp(tmp_path, info), "concat", {}, {}, {}) != before


def test_checkpoint_key_ignores_how_seeds_are_scheduled():
    """Seeds trained side by side or one by one give the same numbers (tests/test_determinism.py),
    so ``train.seed_workers`` does not change the key; a setting that changes the numbers does."""
    from mmbalance.train.run import checkpoint_key

    info, train = {"splits": {}}, {"epochs": 2, "lr": 0.01, "seed_workers": 3}
    key = checkpoint_key(info, [], "concat", {}, {}, train)
    assert checkpoint_key(info, [], "concat", {}, {}, {**train, "seed_workers": 1}) == key
    assert checkpoint_key(info, [], "concat", {}, {}, {**train, "lr": 0.1}) != key
