import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def real_data_roots():
    """(sc12 root, noise root) from the environment, or skip the test with the reason."""
    root = os.environ.get("KWS_SC12_ROOT")
    noise = os.environ.get("KWS_SC_NOISE_ROOT")
    if not root or not os.path.isdir(root):
        pytest.skip("real Speech Commands test set not available (set KWS_SC12_ROOT)")
    return root, noise


@pytest.fixture(scope="session")
def neon_tools() -> tuple[str, str]:
    """(aarch64 compiler, qemu) for the NEON checks, or skip the test with the reason they are missing."""
    from kwslib.deploy import ckernels, qemu

    try:
        return qemu.neon_tools()
    except ckernels.CKernelsUnavailable as exc:
        pytest.skip(str(exc))
