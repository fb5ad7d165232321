"""Copies csrc/ into the emulation's build directory, rewriting the two constructs that have no host form:
a kernel launch `kernel<<<grid, block, smem, stream>>>(args)` becomes `seer_emu::launch(kernel, grid, block,
smem, stream)(args)`, and `extern __shared__ __align__(N) unsigned char name[];` becomes a pointer to the
CTA's emulated shared memory. Everything else is the source as it is. A file is rewritten only when its
content changes (the build's up-to-date checks use the copies' times). Usage: emu_source.py ROOT DEST."""
import os
import re
import sys

LAUNCH = re.compile(r"([\w:]+(?:<\w+>)?)<<<(.*?)>>>\(", re.S)
DYN_SMEM = re.compile(r"extern __shared__ __align__\((\d+)\) unsigned char (\w+)\[\];")


def main(root, dest):
    n_launch = n_smem = 0
    for dirpath, _, files in os.walk(os.path.join(root, "csrc")):
        if os.sep + "hip" in dirpath[len(root):]:
            continue
        for f in files:
            if not f.endswith((".cu", ".cuh", ".h", ".cpp")):
                continue
            src = os.path.join(dirpath, f)
            text = open(src).read()
            text, a = LAUNCH.subn(r"seer_emu::launch(\1, \2)(", text)
            text, b = DYN_SMEM.subn(r"unsigned char* const \2 = seer_emu::dynamic_smem();", text)
            n_launch += a
            n_smem += b
            out = os.path.join(dest, os.path.relpath(src, root))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            if not os.path.exists(out) or open(out).read() != text:
                with open(out, "w") as fh:
                    fh.write(text)
    if n_launch == 0 or n_smem == 0:
        sys.exit(f"emu_source.py: found {n_launch} launches and {n_smem} shared-memory declarations; expected some")
    print(f"emu_source.py: {n_launch} launches, {n_smem} dynamic shared-memory declarations rewritten")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
