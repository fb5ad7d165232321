"""Properties of the built extension itself."""
import os
import struct

import pytest

import seer_attn


def _elf_section_names(path):
    """Section names of a 64-bit little-endian ELF file (enough for the extension on Linux x86-64)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        pytest.skip("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def section(i):
        name, _, _, _, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size
    _, str_off, _ = section(shstrndx)
    names = []
    for i in range(shnum):
        name, _, _ = section(i)
        end = data.index(b"\0", str_off + name)
        names.append(data[str_off + name:end].decode())
    return names


@pytest.mark.skipif(os.environ.get("SEER_ATTN_DEBUG") == "1", reason="debug build")
def test_release_build_has_no_debug_info():
    so = seer_attn._C.__file__
    names = _elf_section_names(so)
    assert ".text" in names
    debug = [n for n in names if n.startswith(".debug")]
    assert not debug, f"{os.path.basename(so)} carries debug info: {debug}"


def test_instantiation_files_carry_their_arch():
    # Every generated kernel file names the arch it is compiled for (setup.py / cmake compile *_sm80.cu
    # for every listed arch >= 8.0 and *_sm90.cu for sm_90a only), and the tree holds exactly what
    # csrc/generate_instantiations.py writes.
    import glob
    import importlib.util
    import re

    csrc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
    spec = importlib.util.spec_from_file_location("generate_instantiations",
                                                  os.path.join(csrc, "generate_instantiations.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    want = {rel: gen.TEMPLATE.format(header=header, body="".join(lines)) for rel, header, lines in gen.units()}
    on_disk = {os.path.relpath(p, csrc) for p in glob.glob(os.path.join(csrc, "*", "instantiations", "*.cu"))}
    assert on_disk == set(want)
    for rel in on_disk:
        assert re.search(r"_sm(80|90)\.cu$", rel), rel
        with open(os.path.join(csrc, rel)) as f:
            assert f.read() == want[rel], f"{rel} differs from what generate_instantiations.py writes"
