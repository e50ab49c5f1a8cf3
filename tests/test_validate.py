import subprocess
import sys
from pathlib import Path

from mmbalance.datasets.mini import get_generator

ROOT = Path(__file__).parents[1]


def _validate(root):
    return subprocess.run([sys.executable, str(ROOT / "stages/validate.py"), "--dataset", "cremad", "--root", str(root),
                           "--params", str(ROOT / "params.yaml")], capture_output=True, text=True)


def test_validate_lists_problems_with_paths(tmp_path):
    root = tmp_path / "cremad"
    get_generator("cremad")(root, clips_per_class=2, seed=0, show_progress=False)
    (root / "AudioWAV" / "1001_DFA_XXX_XX.wav").write_bytes(b"")  # unknown emotion code
    victim = sorted((root / "VideoFlash").glob("*.flv"))[0]
    victim.unlink()
    proc = _validate(root)
    assert proc.returncode == 0, proc.stderr
    assert "11 usable clips" in proc.stdout
    assert "1001_DFA_XXX_XX" in proc.stdout
    assert f"video missing: expected {victim}" in proc.stdout


def test_validate_missing_root_fails(tmp_path):
    proc = _validate(tmp_path / "nope")
    assert proc.returncode == 1
    assert str(tmp_path / "nope") in proc.stdout
