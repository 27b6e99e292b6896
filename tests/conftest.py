"""Shared fixtures: a tiny digits zoo spec that trains in about a second per member."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

# One intra-op thread by default: the test models are tiny, for which one thread is as fast as
# two, and a busy 2-core CI machine slows multi-threaded torch down by an order of magnitude.
# OMP_NUM_THREADS=N runs the suite with N threads (it must pass with any count: no test compares
# floating-point kernel results exactly across thread counts).
torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))

TINY_SPEC = """\
name: tiny-digits
description: a tiny digits zoo for the tests
arch: resnet18
dataset: digits
training:
  optimizer: sgd
  lr: 0.1
  momentum: 0.9
  weight_decay: 5.0e-4
  scheduler: {name: onecycle_cosine}
  epochs: 3
  augmentation: {random_crop: {padding: 1}}
  checkpoints: {every: 2}
profiles:
  smoke:
    grid: {width: [1], batch_size: [256, 512], seed: [0]}
"""


def write_spec(tmp_path: Path, text: str = TINY_SPEC, name: str = "tiny-digits.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path)
