"""Streaming windows over log-mel frames, with no training framework (numpy; torch tensors accepted).

The state-free model sees a fixed window of ``context_frames`` frames; in
streaming it runs on a sliding window every ``step_frames``. These helpers are
shared by training/evaluation (which pass torch tensors) and by the inference
path (``kwslib.deploy.engine``, ``kwslib detect``), which must not import torch: nothing
here imports it.
"""
from __future__ import annotations

import numpy as np


def center_window(features: torch.Tensor, context_frames: int) -> torch.Tensor:
    """The centred ``context_frames`` of a batch of clip features [B, F, M] (F >= context)."""
    extra = features.shape[-2] - context_frames
    if extra < 0:
        raise ValueError(f"clip has {features.shape[-2]} frames, the model needs {context_frames}")
    start = extra // 2
    return features[..., start:start + context_frames, :]


def sliding_windows(features, context_frames: int, step_frames: int):
    """All windows of a feature stream [F, M] every ``step_frames``: [N, context, M].

    Window t covers frames [t*step, t*step + context). Works on numpy arrays
    and torch tensors (a view, no copy, for torch).
    """
    if isinstance(features, np.ndarray):
        n = 0 if len(features) < context_frames else 1 + (len(features) - context_frames) // step_frames
        idx = np.arange(n)[:, None] * step_frames + np.arange(context_frames)[None, :]
        return features[idx] if n else np.zeros((0, context_frames, features.shape[1]), features.dtype)
    if features.shape[0] < context_frames:
        return features.new_zeros((0, context_frames, features.shape[1]))
    return features.unfold(0, context_frames, step_frames).transpose(1, 2)


class StreamingRunner:
    """Streaming inference: push feature frames, get posteriors every ``step_frames``.

    State-free model: the runner only keeps the last ``context_frames`` frames.
    ``posterior_fn`` maps windows [N, context, M] (numpy float32) to
    posteriors [N, C]; it can be a torch model (see :func:`kwslib.model.torch_posterior_fn`)
    or an integer engine. Output step t corresponds to the window of frames
    [t*step, t*step + context), exactly as :func:`sliding_windows`.
    """

    def __init__(self, posterior_fn, context_frames: int, step_frames: int, n_mels: int, dtype=np.float32):
        self.fn = posterior_fn
        self.context, self.step, self.n_mels = context_frames, step_frames, n_mels
        self.dtype = np.dtype(dtype)  # float32 log-mel frames, or int32 Q20 log2 frames (kwslib.frontend.intfrontend)
        self.reset()

    def reset(self):
        self.buf = np.zeros((0, self.n_mels), self.dtype)
        self.frames_seen = 0  # frames pushed so far
        self.next_end = self.context  # frame count at which the next window is complete

    def push(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, self.dtype).reshape(-1, self.n_mels)
        self.buf = np.concatenate([self.buf, frames])
        self.frames_seen += len(frames)
        buf_start = self.frames_seen - len(self.buf)  # absolute index of buf[0]
        windows = []
        while self.next_end <= self.frames_seen:
            s = self.next_end - self.context - buf_start
            windows.append(self.buf[s:s + self.context])
            self.next_end += self.step
        keep_from = max(0, self.next_end - self.context - buf_start)
        self.buf = self.buf[keep_from:]
        if not windows:
            return np.zeros((0, 0), np.float32)
        return np.asarray(self.fn(np.stack(windows)))
