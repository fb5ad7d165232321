"""Shared pytest configuration for the seer_attn tests.

Devices: every test that takes the `device` fixture runs on "cpu" (the pure-PyTorch reference that
seer_attn registers as the CPU implementation) and on "cuda" when a GPU is available (the CUDA
kernels).  SEER_ATTN_TEST_DEVICES=cuda (or cpu, or "cpu,cuda") restricts the set.

Markers: `slow` marks tests too slow for the default CPU run: their CPU instances are skipped
unless `--runslow` is given or SEER_ATTN_RUNSLOW=1; their CUDA instances always run (the CUDA path
is fast).  `slow_cuda` additionally skips the CUDA instance by default (e.g. torch.compile with
Inductor).
"""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import naive` / `import helpers` from tests


def _devices():
    env = os.environ.get("SEER_ATTN_TEST_DEVICES")
    if env:
        want = [d.strip() for d in env.split(",") if d.strip()]
    else:
        want = ["cpu", "cuda"]
    out = []
    for d in want:
        if d == "cuda" and not torch.cuda.is_available():
            continue
        out.append(d)
    return out


DEVICES = _devices()

# The low-precision naive (the accuracy yardstick) must be computed "as PyTorch would" but not with
# extra shortcuts that only loosen the bound: no reduced-precision reductions, no TF32.
torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow test (skipped unless --runslow or SEER_ATTN_RUNSLOW=1)")
    config.addinivalue_line("markers", "slow_cuda: slow even on CUDA (skipped unless --runslow)")


def pytest_collection_modifyitems(config, items):
    # `slow` is about the CPU reference path: on CUDA those tests are cheap and always run
    # (unless the test is also marked `slow_cuda`).
    if config.getoption("--runslow") or os.environ.get("SEER_ATTN_RUNSLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: use --runslow")
    for item in items:
        if "slow" not in item.keywords:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("device") == "cuda" and "slow_cuda" not in item.keywords:
            continue
        item.add_marker(skip_slow)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
