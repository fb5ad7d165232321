// A model of the backward's dK/dV grid order (csrc/attention/tile_scheduler.h key_tile_item): the share of
// Q / dO tile reads the L2 serves when CTAs run in dispatch order. Not a timing; NOTES v18 item 4 predicts
// from it. P2 of WORKLOADS.md (one 65,536-token sequence unless a length is given), 32 q / 8 kv heads, 64x64
// blocks, causal 2D masks per q head drawn as there; a CTA = one (kv head, 64-key tile), reading the Q + dO
// tile (32 KB) of each (q head of its group, kept 64-row tile) in row order; one unit per read, two per CTA.
// LRU L2 over those tiles.
//   g++ -O2 -std=c++17 benchmarks/dkdv_order_model.cpp -o /tmp/dkdv_order_model
//   /tmp/dkdv_order_model <density> 0|1 (0: key-major, before v21; 1: head-major, key_tile_item today) [L2 MB = 25] [CTAs = 264] [length]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <list>
#include <unordered_map>
#include <random>
#include <algorithm>
#include <queue>
#include <cmath>
int main(int argc, char** argv) {
  double d = atof(argv[1]); int order = atoi(argv[2]); double l2mb = argc > 3 ? atof(argv[3]) : 25.0; int ctas = argc > 4 ? atoi(argv[4]) : 264;
  const int L = atoi(argc > 5 ? argv[5] : "65536"), nb = L / 64, hkv = 8, group = 4;
  std::mt19937 rng(0);
  // kept[h][kt] = list of row tiles rt (>= kt) keeping block kt
  std::vector<std::vector<std::vector<int>>> kept(hkv * group, std::vector<std::vector<int>>(nb));
  for (int h = 0; h < hkv * group; ++h) for (int qb = 0; qb < nb; ++qb) {
    int k = std::max(1, (int)std::lround(d * (qb + 1)));
    std::vector<int> c(qb); for (int i = 0; i < qb; ++i) c[i] = i; std::shuffle(c.begin(), c.end(), rng);
    for (int i = 0; i < k - 1; ++i) kept[h][c[i]].push_back(qb); kept[h][qb].push_back(qb); }
  for (auto& hh : kept) for (auto& v : hh) std::sort(v.begin(), v.end());
  std::vector<std::pair<int,int>> grid;  // (hk, kt) in dispatch order
  if (order == 0) { for (int kt = 0; kt < nb; ++kt) for (int hk = 0; hk < hkv; ++hk) grid.push_back({hk, kt}); }
  else { for (int hk = 0; hk < hkv; ++hk) for (int kt = 0; kt < nb; ++kt) grid.push_back({hk, kt}); }
  long cap = (long)(l2mb * 1024 * 1024 / (64 * 128 * 2 * 2));
  std::list<long> lru; std::unordered_map<long, std::list<long>::iterator> pos; long hits = 0, reads = 0;
  // each CTA: stream of (h, rt) reads: for rt ascending, for h in group (interleaved as the kernel's row-tile batches)
  size_t next = 0; typedef std::pair<double,int> E; std::priority_queue<E, std::vector<E>, std::greater<E>> ev;
  std::vector<std::vector<std::pair<int,int>>> cur(ctas); std::vector<size_t> ci(ctas, 0); std::vector<int> chk(ctas);
  for (int c = 0; c < ctas; ++c) ev.push({0.0, c}); double mk = 0;
  while (!ev.empty()) { auto [t, c] = ev.top(); ev.pop();
    if (ci[c] >= cur[c].size()) { if (next >= grid.size()) { mk = std::max(mk, t); continue; }
      auto [hk, kt] = grid[next++]; cur[c].clear(); ci[c] = 0; chk[c] = hk;
      for (int g = 0; g < group; ++g) for (int rt : kept[hk * group + g][kt]) cur[c].push_back({hk * group + g, rt});
      std::sort(cur[c].begin(), cur[c].end(), [](auto a, auto b) { return a.second < b.second || (a.second == b.second && a.first < b.first); });
      t += 2; if (cur[c].empty()) { ev.push({t, c}); continue; } }
    auto [h, rt] = cur[c][ci[c]++]; long key = (long)h * 4096 + rt; ++reads;
    auto f = pos.find(key); if (f != pos.end()) { ++hits; lru.erase(f->second); } else if ((long)lru.size() >= cap) { pos.erase(lru.back()); lru.pop_back(); }
    lru.push_front(key); pos[key] = lru.begin(); ev.push({t + 1, c}); }
  printf("d=%.2f order=%s L2=%.0f: hits %.3f of %ld reads, makespan %.0f\n", d, order ? "head-major" : "key-major", l2mb, (double)hits / reads, reads, mk);
}
