"""CPU test of the MFMA fragment layouts of the HIP (ROCm / MI300X) kernels.

Compiles tests/hip_layout/mfma_layout_test.cpp with the host C++ compiler (no HIP needed: the index
functions in csrc/common/hip_mfma.h and csrc/attention/hip/fwd_layout_hip.h are plain constexpr C++)
and runs it: tile GEMMs through the kernels' fragment maps against a plain matmul, with a model of
each MFMA instruction written from AMD's CDNA3 ISA documentation, plus the LDS bank-conflict model.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_mfma_layouts(tmp_path):
    exe = tmp_path / "mfma_layout_test"
    src = os.path.join(ROOT, "tests", "hip_layout", "mfma_layout_test.cpp")
    subprocess.run([CXX, "-std=c++17", "-O2", "-I", os.path.join(ROOT, "csrc"), src, "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all MFMA layout checks passed" in r.stdout
