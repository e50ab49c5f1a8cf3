"""Shared fixtures: a tiny synthetic batch and model config for CPU step tests."""

import pytest
import torch

MODEL_CFG = {
    "fusion": "concat",
    "encoders": {
        "audio": {"name": "tiny_cnn", "channels": [4, 8], "input_size": [16, 20]},
        "visual": {"name": "tiny_cnn", "channels": [4, 8]},
    },
}
IN_CHANNELS = {"audio": 1, "visual": 3}


@pytest.fixture
def batch():
    """Inputs shaped like the prepared shards (spectrogram [B,1,F,T], frames [B,n,3,H,W]) and labels."""
    gen = torch.Generator().manual_seed(0)
    inputs = {"audio": torch.randn(8, 1, 33, 40, generator=gen), "visual": torch.randn(8, 1, 3, 16, 16, generator=gen)}
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    return inputs, labels
