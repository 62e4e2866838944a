"""The GPU tests (`make test-gpu`, pytest -m gpu): they fail, never skip, when torch sees
no CUDA GPU, so a GPU job that lost its GPU cannot pass by testing nothing."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def cuda_gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        pytest.fail(f"the gpu tests need a CUDA GPU visible to torch; torch "
                    f"{torch.__version__} sees none (a CPU-only build, no driver, or "
                    "CUDA_VISIBLE_DEVICES hides it)", pytrace=False)
    return torch.cuda.get_device_name(0)
