#!/usr/bin/env bash
# Kernel changes that are built and emulated but not yet measured on a GPU, kept as patches on main (branches
# did not survive between sessions). Prepares the device call that measures them (benchmarks/NOTES.md v36):
# source archives of main and of main + the patches in order (er; nm + er; nm + er + q), under .dev/, for benchmarks/device_ab.sh.
#
#   bash benchmarks/candidates/prepare.sh      # then, on the device: DL=540 bash .dev/candidates.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .dev
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
archive() {  # name patch... -> .dev/src_name.tar.gz (the checked-out HEAD - main - with the patches applied)
  local name=$1; shift
  rm -rf "$tmp/$name"; mkdir -p "$tmp/$name"
  git archive HEAD | tar -x -C "$tmp/$name"
  for p in "$@"; do (cd "$tmp/$name" && patch -s -p1 < "$OLDPWD/benchmarks/candidates/$p"); done
  tar czf ".dev/src_$name.tar.gz" -C "$tmp/$name" .
  echo ".dev/src_$name.tar.gz: main + ${*:-nothing}"
}
archive main
archive er early_release.patch
archive ernm no_marker.patch early_release.patch
archive ernmq no_marker.patch early_release.patch early_q.patch
cat > .dev/candidates.sh <<'SH'
#!/usr/bin/env bash
# main against the candidates (nm's share = ernm against er): ernmq's CUDA pytest; forward kernel times at the
# low densities (2D: the single kernel; P1 1D GQA d = 0.1: the pair kernel), at d = 1 (the pair kernel, long
# items: er does not touch it, nm / q should not move it) and the dQ kernel in P1 d = 0.1 fwd+bwd.
export TEST=ernmq KT_REPS=15 ROUNDS=2 COMPARE=main,ernmq DENSITIES=0.5,0.1
export CASES="P1:2d:0.1 P1:2d:0.2 P1:2d:0.5 P2:2d:0.1 P1:gqa:0.1 P1:2d:1.0 P1:2d:0.1:fb"
bash benchmarks/device_ab.sh main er ernm ernmq
SH
echo "device call: run with command 'DL=540 bash .dev/candidates.sh', carry [\".dev\"], timeout_s 600"
