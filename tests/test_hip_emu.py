"""Runs the unmodified HIP (ROCm / MI300X) kernel sources on the CPU.

tests/hip_emu/hip_emu.h emulates the device features the HIP kernels use with host threads in lockstep
wavefronts of 64 (shuffles, ballots, readlane and MFMA as rendezvous of the 64 lanes, the CDNA3 MFMA
layout, LDS as statics). tests/hip_emu/attn_emu_test.cpp runs the forward and both backward paths,
decode_pool_emu_test.cpp the decode (split + combine) and pooling kernels, and both compare them with a
float64 reference of SPEC.md. Needs clang++ (ext_vector_type, C++20 <barrier>):
`make hip-check` installs clang-19; without it the test is skipped.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLANG = os.environ.get("SEER_HIP_CLANG") or shutil.which("clang++-19") or shutil.which("clang++")


@pytest.mark.skipif(CLANG is None, reason="clang++ not found (make hip-check installs clang-19)")
@pytest.mark.parametrize("test", ["attn_emu_test", "decode_pool_emu_test"])
def test_hip_kernels_emulated(tmp_path, test):
    exe = tmp_path / test
    src = os.path.join(ROOT, "tests", "hip_emu", f"{test}.cpp")
    subprocess.run([CLANG, "-std=c++20", "-O1", "-Wno-psabi", "-DSEER_HIP_EMU", "-DUSE_ROCM",
                    "-I", os.path.join(ROOT, "csrc"), "-I", os.path.join(ROOT, "tests", "hip_emu"), src,
                    "-o", str(exe), "-pthread"], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=900)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
