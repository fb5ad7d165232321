"""Build seer_attn._C.

- With a CUDA build of torch and a CUDA toolkit (CUDA_HOME / nvcc): a CUDAExtension with every kernel in
  csrc/ (architectures from TORCH_CUDA_ARCH_LIST, default "8.0;9.0a" for a wheel; a "9.0a" entry adds
  the Hopper wgmma kernels - attention forward / backward, pooling - used on compute-capability-9.0
  GPUs). Kernel files carry their arch in
  their name and are compiled for it only: *_sm80.cu for every listed arch >= 8.0, *_sm90.cu for
  sm_90a alone.
- With a ROCm build of torch (and SEER_ATTN_CPU_ONLY unset): a HIP extension with the MFMA kernels of
  csrc/*/hip/ (CDNA3; architectures from PYTORCH_ROCM_ARCH, default gfx942), the tile-mask and tail-fill
  kernels and the *_api.cpp layers, hipified by torch; the mma.sync / wgmma kernels are NVIDIA-only and
  are not compiled. Compile-verified only (`make hip-check`): no AMD GPU has run them yet.
- Otherwise (CPU-only torch, or SEER_ATTN_CPU_ONLY=1): a C++ extension with the op schemas only; every
  op then runs the pure-PyTorch reference.

Environment: MAX_JOBS (parallel compile jobs, read by torch's ninja build), TORCH_CUDA_ARCH_LIST,
SEER_ATTN_DEBUG=1 (-O0 -g host debug info, -G device debug info), SEER_ATTN_CPU_ONLY=1,
SEER_ATTN_KERNELS_LIB=path/to/libseer_attn_kernels.a: link device code prebuilt by cmake/CMakeLists.txt
instead of compiling the .cu files (they include no torch header, so the archive is torch-independent).
"""
import glob
import os
import re

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("SEER_ATTN_DEBUG", "0") == "1"
CPU_ONLY = os.environ.get("SEER_ATTN_CPU_ONLY", "0") == "1"
IS_ROCM = torch.version.hip is not None
HAS_CUDA = (torch.version.cuda is not None) and (CUDA_HOME is not None) and not CPU_ONLY


def rel(paths):
    return sorted(os.path.relpath(p, HERE) for p in paths)


PREBUILT = os.environ.get("SEER_ATTN_KERNELS_LIB")


def kernel_sources():
    """Every .cu file outside csrc/*/hip/ (unless prebuilt) and every *_api.cpp (the torch-facing layers)
    under csrc/.
    Files named *_sm80.cu / *_sm90.cu hold kernels written for one arch; Build.build_extension compiles
    them apart, for that arch only (arch_flags)."""
    cu = [] if PREBUILT else glob.glob(os.path.join(HERE, "csrc", "**", "*.cu"), recursive=True)
    cu = [f for f in cu if os.sep + "hip" + os.sep not in f]  # csrc/*/hip/: the ROCm build's kernels
    api = glob.glob(os.path.join(HERE, "csrc", "**", "*_api.cpp"), recursive=True)
    return rel(cu) + rel(api)


def source_arch(path):
    """The arch a kernel file is written for ("sm80", "sm90"), from its name; None: arch-neutral."""
    for arch in ("sm80", "sm90"):
        if path.endswith(f"_{arch}.cu"):
            return arch
    return None


def arch_flags(arch):
    """nvcc -gencode flags of the build's arch list (TORCH_CUDA_ARCH_LIST) that a file of `arch` is
    compiled for: sm80 (mma.sync kernels) every entry >= 8.0 (sm_90a included: they are the fallback on
    Hopper); sm90 (wgmma kernels) sm_90a alone, and only when the list has 9.0a. [] means: not built."""
    if arch == "sm90":
        return ["-gencode=arch=compute_90a,code=sm_90a"] if SM90A else []
    from torch.utils.cpp_extension import _get_cuda_arch_flags
    keep = []
    for flag in _get_cuda_arch_flags():
        m = re.search(r"arch=compute_(\d+)", flag)
        if m and int(m.group(1)) >= 80:
            keep.append(flag)
    return keep


class Build(BuildExtension):
    """torch's BuildExtension, plus: the *_sm80.cu and *_sm90.cu sources are compiled in their own ninja
    pass each, with the -gencode flags of their arch only (arch_flags; torch adds no other arch flags
    when one is given), and linked into the extension as extra objects. The other .cu files (dispatch,
    tile mask, tail fill: no arch-specific code) get every arch of the list."""

    def build_extension(self, ext):
        for arch in ("sm80", "sm90"):
            files = [s for s in ext.sources if source_arch(s) == arch]
            if not files:
                continue
            ext.sources = [s for s in ext.sources if source_arch(s) != arch]
            gencode = arch_flags(arch)
            if arch == "sm80" and not gencode:
                raise RuntimeError("seer_attn: TORCH_CUDA_ARCH_LIST must have an arch >= 8.0 (the mma.sync "
                                   "kernels need sm_80+), got " + os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
            if gencode:
                args = dict(ext.extra_compile_args)
                args["nvcc"] = list(args["nvcc"]) + gencode
                objects = self.compiler.compile(files, output_dir=os.path.join(self.build_temp, arch),
                                                macros=ext.define_macros, include_dirs=ext.include_dirs,
                                                debug=self.debug, extra_postargs=args, depends=ext.depends)
                ext.extra_objects = list(ext.extra_objects) + objects
        super().build_extension(ext)


def cxx_std():
    """The C++ standard this torch's headers need (newer torch releases require C++20)."""
    aten_h = os.path.join(os.path.dirname(torch.__file__), "include", "ATen", "ATen.h")
    try:
        with open(aten_h) as f:
            return "c++20" if "C++20" in f.read() else "c++17"
    except OSError:
        return "c++17"


STD = cxx_std()
SM90A = False  # the arch list has a 9.0a entry (CUDA builds, set below)
# Release builds carry no DWARF: Python's sysconfig CFLAGS (which torch's BuildExtension puts in front
# of every host compile and link line) contain -g, so -g0 comes last and overrides it. nvcc gets no -g
# from there; -lineinfo below only adds device line tables (for profilers), no host debug info.
cxx_flags = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
link_flags = [] if DEBUG else ["-g0"]
cxx_flags += [f"-std={STD}"]
include_dirs = [os.path.join(HERE, "csrc")]

if IS_ROCM and not CPU_ONLY:
    # MI300X (CDNA3) by default; the MFMA mainloops use gfx90a+ instructions (v_mfma_*_1k).
    os.environ.setdefault("PYTORCH_ROCM_ARCH", "gfx942")
    rocm_sources = rel(glob.glob(os.path.join(HERE, "csrc", "*", "hip", "*_hip.cu"))) + [
        "csrc/attention/tile_mask.cu",
        "csrc/attention/item_order.cu",
        "csrc/common/tail_fill.cu",
    ]
    api_sources = rel(glob.glob(os.path.join(HERE, "csrc", "**", "*_api.cpp"), recursive=True))
    ext = CUDAExtension(
        name="seer_attn._C",
        sources=["csrc/ops.cpp"] + rocm_sources + api_sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags + ["-DUSE_ROCM=1"],
                            "nvcc": [f"-std={STD}", "-DUSE_ROCM=1"] + (["-O0", "-g"] if DEBUG else ["-O3"])},
    )
elif HAS_CUDA:
    # 9.0a (not 9.0): H100 / H200 code with the Hopper-only wgmma kernels; 8.0 covers Ampere and Ada.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0a")
    # SEER_ATTN_SM90A: the build holds sm_90a device code, so the API layer may pick the wgmma kernels
    # on compute-capability-9.0 devices (csrc/common/device_facts.h, use_sm90_kernels).
    archs = os.environ["TORCH_CUDA_ARCH_LIST"].replace(",", ";").replace(" ", ";").split(";")
    SM90A = any(a.strip().startswith("9.0a") for a in archs)
    sm90a = ["-DSEER_ATTN_SM90A"] if SM90A else []
    nvcc_flags = [
        f"-std={STD}",
        "--use_fast_math",
        "--expt-relaxed-constexpr",
        "-U__CUDA_NO_HALF_OPERATORS__",
        "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_OPERATORS__",
        "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-lineinfo",
    ] + (["-O0", "-G"] if DEBUG else ["-O3"]) + sm90a
    ext = CUDAExtension(
        name="seer_attn._C",
        sources=["csrc/ops.cpp"] + kernel_sources(),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags + ["-DSEER_ATTN_WITH_CUDA"] + sm90a, "nvcc": nvcc_flags},
        extra_objects=[os.path.abspath(PREBUILT)] if PREBUILT else [],
        extra_link_args=link_flags,
    )
else:
    ext = CppExtension(
        name="seer_attn._C",
        sources=["csrc/ops.cpp"],
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

setup(
    name="seer_attn",
    version="0.1.0",
    description="Variable-length block-sparse attention kernels (2D/1D masks, pooling, decode) for PyTorch",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["seer_attn", "seer_attn.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": Build.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch"],
    zip_safe=False,
)
