"""Audio decoding and the log-spectrogram recipes.

``log_spectrogram`` (the default) = the "Audio B" recipe of the reference code (257x299 for
3 s at 16 kHz, 257x1004 for 10 s): scipy.signal.spectrogram with a Tukey(0.25) window of 512
samples, hop 159 (overlap 353), no centring, PSD ("density") scaling, then log(S + 1e-7) and a
per-clip z-score. ``log_stft_magnitude`` = the OGM-GE code's librosa-style form (22.05 kHz,
3 s, Hann, centred, log(|STFT| + 1e-7), no z-score: 257x188).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy import signal

from mmbalance.media.errors import MediaError

__all__ = ["MediaError", "fit_length", "load_audio", "log_spectrogram", "log_stft_magnitude"]

_LOG_EPS = 1e-7  # added before the log, as in the reference code
_STD_EPS = 1e-9  # z-score denominator guard, as in the reference code
# Below this a file's rate is not a recording's (wrong header); resampling 100 Hz to 16 kHz would
# also blow the sample count up 160-fold. Telephone audio (8 kHz) is well above it.
MIN_SAMPLE_RATE = 4000


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to float32 mono at ``sample_rate``; returns shape [num_samples].

    ``.wav`` files are read with soundfile; any other file (the audio track of .flv/.mp4) is
    decoded with PyAV. Channels are averaged; a differing rate is resampled with
    ``scipy.signal.resample_poly``. Raises MediaError naming the path on any failure.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: audio file does not exist")
    if path.suffix.lower() == ".wav":
        wave, rate = _read_wav(path)
    else:
        wave, rate = _read_av_audio(path)
    if wave.size == 0:
        raise MediaError(f"{path}: audio stream has zero samples")
    if rate < MIN_SAMPLE_RATE:
        raise MediaError(f"{path}: sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz (a wrong header?)")
    return _resample(wave, rate, sample_rate)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a wav with soundfile -> (mono float32 [n], rate); a file cut short is an error."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [n, channels]
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise MediaError(f"{path}: cannot read wav file ({err})") from None
    _check_wav_length(path)
    return data.mean(axis=1, dtype=np.float32), int(rate)


def _check_wav_length(path: Path) -> None:
    """Raise MediaError when the RIFF header declares more audio bytes than the file holds.

    libsndfile reads a truncated wav silently as a shorter recording (it trusts the file size),
    so a copy interrupted half-way would pass as a short clip; the ``data`` chunk's declared
    size tells. Sizes 0 and 0xFFFFFFFF (streaming writers that never patch the header) are not
    checked.
    """
    total = path.stat().st_size
    with path.open("rb") as f:
        if f.read(12)[:4] not in (b"RIFF", b"RF64"):
            return
        pos = 12  # after "RIFF" <size> "WAVE": walk the chunk headers only
        while pos + 8 <= total:
            f.seek(pos)
            head = f.read(8)
            size = int.from_bytes(head[4:8], "little")
            if head[:4] == b"data":
                held = total - pos - 8
                if 0 < size < 0xFFFFFFFF and held < size:
                    raise MediaError(f"{path}: truncated wav: the header declares {size} bytes of audio, the file holds {held}")
                return
            pos += 8 + size + (size & 1)  # chunks are word-aligned


def _read_av_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with PyAV -> (mono float32 [n], native rate)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: file has no audio stream")
            stream = container.streams.audio[0]
            # Convert every decoded frame to planar float at the native rate/layout, so the
            # arrays are [channels, samples] whatever the codec's sample format is.
            resampler = av.AudioResampler(format="fltp")
            rate = stream.rate
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                rate = frame.sample_rate
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode audio ({err})") from None
    if not chunks:
        raise MediaError(f"{path}: audio stream decoded to zero samples")
    data = np.concatenate(chunks, axis=1)  # [channels, n]
    return data.mean(axis=0, dtype=np.float32), int(rate)


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (identity when equal)."""
    if rate == target:
        return wave.astype(np.float32, copy=False)
    g = gcd(int(rate), int(target))
    return signal.resample_poly(wave, target // g, rate // g).astype(np.float32)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Tile ``wave`` [n] as often as needed, then crop to exactly ``num_samples``.

    Tiling (not zero padding) follows the reference code (``np.tile(x, k)[:N]``).
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"fit_length needs a non-empty 1-D wave, got shape {wave.shape}")
    reps = -(-num_samples // wave.size)  # ceil division
    return np.tile(wave, reps)[:num_samples]


def log_spectrogram(
    wave: np.ndarray,
    sample_rate: int = 16000,
    n_fft: int = 512,
    win_length: int = 512,
    hop_length: int = 159,
    window: str = "tukey",
    scaling: str = "density",
    mode: str = "psd",
    normalize: bool = True,
) -> np.ndarray:
    """Log spectrogram, float32 [n_fft // 2 + 1, frames], frames = 1 + (n - win) // hop.

    window: "tukey" means ('tukey', 0.25), scipy's default; any other scipy window name
    (e.g. "hann") is passed through. scaling: "density" (PSD) or "spectrum". mode: "psd"
    (power) or "magnitude" (|S|, as in the OGM-GE code's form). No centring/padding, constant
    detrend (scipy defaults). The reference code clips the wave to [-1, 1] beforehand; callers
    that want that do it before calling. normalize: per-clip z-score (x - mean) / (std + 1e-9).
    """
    win = ("tukey", 0.25) if window == "tukey" else window
    _, _, spec = signal.spectrogram(
        np.asarray(wave, dtype=np.float64),
        fs=sample_rate,
        window=win,
        nperseg=win_length,
        noverlap=win_length - hop_length,
        nfft=n_fft,
        scaling=scaling,
        mode=mode,
    )  # [n_fft//2+1, frames]
    spec = np.log(spec + _LOG_EPS)
    if normalize:
        spec = (spec - spec.mean()) / (spec.std() + _STD_EPS)
    return spec.astype(np.float32)


def log_stft_magnitude(
    wave: np.ndarray,
    n_fft: int = 512,
    hop_length: int = 353,
    center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """log(|STFT| + 1e-7) as librosa.stft computes it; float32 [n_fft // 2 + 1, frames].

    Periodic Hann window of n_fft samples, no scaling, no detrend; center pads n_fft // 2 on
    both sides ("constant" = zeros, librosa >= 0.10's default; "reflect" = older librosa), so
    frames = 1 + n // hop_length (66,150 samples -> 257x188, the OGM-GE code's shape).
    """
    x = np.asarray(wave, dtype=np.float64)
    if center:
        x = np.pad(x, n_fft // 2, mode=pad_mode)
    if x.size < n_fft:
        raise ValueError(f"wave of {x.size} samples is shorter than n_fft={n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length]  # [T, n_fft]
    window = signal.get_window("hann", n_fft, fftbins=True)  # periodic, as librosa
    spec = np.abs(np.fft.rfft(frames * window, axis=1)).T  # [n_fft//2+1, T]
    return np.log(spec + _LOG_EPS).astype(np.float32)


def audio_features(path: Path, recipe: dict, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """The spectrogram recipe on one file: load, optionally cut [start_s, end_s) (an annotated
    event span), tile/crop to ``recipe['clip_seconds']``, log-spectrogram → [n_fft/2+1, T]."""
    sr = int(recipe["sample_rate"])
    wave = load_audio(path, sr)
    if start_s or end_s is not None:
        cut = wave[int(start_s * sr) : None if end_s is None else int(end_s * sr)]
        if cut.size == 0:
            raise MediaError(f"{path}: no audio in the span [{start_s}, {end_s}) s")
        wave = cut
    _check_signal(path, wave, int(recipe["win_length"]), sr)
    wave = fit_length(wave, int(round(float(recipe["clip_seconds"]) * sr)))
    spec = log_spectrogram(wave, sr, n_fft=recipe["n_fft"], win_length=recipe["win_length"],
                           hop_length=recipe["hop_length"], window=recipe["window"],
                           scaling=recipe["scaling"], normalize=recipe["normalize"])
    return spec.astype(recipe.get("spec_dtype", "float32"))


def _check_signal(path: Path, wave: np.ndarray, win_length: int, sample_rate: int) -> None:
    """MediaError naming ``path`` for audio the recipe cannot use: fewer samples than one STFT
    window (tiling would repeat a fragment into a fake 3-10 s clip) or digital silence (every
    sample 0: the log-spectrogram is constant and its z-score all zeros)."""
    if wave.size < win_length:
        raise MediaError(f"{path}: audio has {wave.size} samples ({wave.size / sample_rate:.4f} s), "
                         f"shorter than one STFT window ({win_length} samples)")
    if not np.any(wave):
        raise MediaError(f"{path}: audio is silent (all {wave.size} samples are 0)")
