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
