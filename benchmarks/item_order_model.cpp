// A model of the persistent sm90 forward's work order (csrc/attention/tile_scheduler.h "Work queue"): how
// evenly the CTAs finish and how often a K/V block read finds its block in the L2. Not a timing; the
// numbers NOTES v18 predicts from. Build and run (no GPU, no torch):
//   g++ -O2 -std=c++17 benchmarks/item_order_model.cpp -o /tmp/item_order_model
//   /tmp/item_order_model P1|P2|S16K <density> static|queue [L2 MB = 25] [CTAs = 264] [pair = 0] [section heads = 1]
//
// Workloads as WORKLOADS.md (S16K: one sequence of 16,384, seer_fwd_selftest --time's; 32 q / 8 kv heads, D 128, 64x64 blocks, causal, 2D masks per q head drawn as
// there: round(d * #causal blocks) per query-block row, the diagonal always kept). Items: 64-row tiles of one
// q head (pair = 1: 128-row tiles of two mask rows, streaming the union of their blocks).
//   static : the order before the work queue - item numbers heaviest first (token tile, then sequence, kv
//            head, head slot), CTA c taking c, c + CTAs, ... and skipping the numbers past a sequence's end
//            (0.1 tile-times each);
//   queue  : the work queue - valid items only, sections of `section heads` kv heads > token tile > sequence
//            > kv head > slot, each CTA claiming the next position when it finishes an item.
// Time: one unit per K/V block a CTA streams, 2 units per item (its Q load, epilogue, pipeline fill);
// the CTAs advance in time order. L2: LRU over 32 KB K+V blocks of `L2 MB` (H100 / H200 have 50 MB in
// two halves; 25 MB is the conservative reading). Prints the share of block reads that hit and the
// makespan over the ideal (total work / CTAs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

struct Item {
  int b, hk, slot, tt;
};

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s P1|P2|S16K density static|queue [L2 MB] [CTAs] [pair] [section heads]\n", argv[0]);
    return 2;
  }
  const bool p1 = std::strcmp(argv[1], "P1") == 0, s16k = std::strcmp(argv[1], "S16K") == 0;
  const double d = std::atof(argv[2]);
  const bool queue = std::strcmp(argv[3], "queue") == 0;
  const double l2_mb = argc > 4 ? std::atof(argv[4]) : 25.0;
  const int ctas = argc > 5 ? std::atoi(argv[5]) : 264;
  const bool pair = argc > 6 && std::atoi(argv[6]) != 0;
  const int section = argc > 7 ? std::atoi(argv[7]) : 1;
  const std::vector<int> lens = p1 ? std::vector<int>{16384, 8000, 4096, 2100, 1024, 700, 256, 77}
                                   : std::vector<int>{s16k ? 16384 : 65536};
  const int B = static_cast<int>(lens.size()), hkv = 8, group = 4, bs = 64, rows = pair ? 128 : 64;
  int ntt = 0;
  for (int L : lens) ntt = std::max(ntt, (L + rows - 1) / rows);

  // Kept blocks of each (sequence, q head, 64-row mask row).
  std::mt19937 rng(0);
  std::vector<std::vector<std::vector<std::vector<int>>>> keep(B);
  for (int b = 0; b < B; ++b) {
    const int nb = (lens[b] + bs - 1) / bs;
    keep[b].resize(hkv * group);
    for (auto& head : keep[b]) {
      head.resize(nb);
      for (int qb = 0; qb < nb; ++qb) {
        const int k = std::max(1, static_cast<int>(std::lround(d * (qb + 1))));
        std::vector<int> c(qb);
        for (int i = 0; i < qb; ++i) c[i] = i;
        std::shuffle(c.begin(), c.end(), rng);
        std::vector<int> s(c.begin(), c.begin() + (k - 1));
        s.push_back(qb);
        std::sort(s.begin(), s.end());
        head[qb] = s;
      }
    }
  }
  auto valid = [&](const Item& it) { return it.tt * rows < lens[it.b]; };
  auto stream = [&](const Item& it) {
    const auto& head = keep[it.b][it.hk * group + it.slot];
    if (!pair) return head[it.tt];
    std::vector<int> u;
    for (int r = 0; r < 2; ++r)
      if (2 * it.tt + r < static_cast<int>(head.size())) u.insert(u.end(), head[2 * it.tt + r].begin(), head[2 * it.tt + r].end());
    std::sort(u.begin(), u.end());
    u.erase(std::unique(u.begin(), u.end()), u.end());
    return u;
  };

  std::vector<Item> items;
  if (!queue) {
    for (int tt = ntt - 1; tt >= 0; --tt)
      for (int b = 0; b < B; ++b)
        for (int hk = 0; hk < hkv; ++hk)
          for (int s = 0; s < group; ++s) items.push_back({b, hk, s, tt});
  } else {
    for (int h0 = 0; h0 < hkv; h0 += section)
      for (int tt = ntt - 1; tt >= 0; --tt)
        for (int b = 0; b < B; ++b)
          for (int hk = h0; hk < std::min(hkv, h0 + section); ++hk)
            for (int s = 0; s < group; ++s)
              if (valid({b, hk, s, tt})) items.push_back({b, hk, s, tt});
  }

  const double kItemCost = 2.0, kSkipCost = 0.1;
  const long cap = static_cast<long>(l2_mb * 1024 * 1024 / (bs * 128 * 2 * 2));
  std::list<long> lru;
  std::unordered_map<long, std::list<long>::iterator> where;
  long hits = 0, reads = 0;
  double makespan = 0, work = 0;
  // Per CTA: the next list index it looks at (static) and its current stream.
  std::vector<size_t> next(ctas);
  std::vector<std::vector<int>> cur(ctas);
  std::vector<size_t> pos(ctas, 0);
  std::vector<Item> cur_item(ctas);
  size_t claimed = 0;
  for (int c = 0; c < ctas; ++c) next[c] = c;
  using Ev = std::pair<double, int>;
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> ev;
  for (int c = 0; c < ctas; ++c) ev.push({0.0, c});
  while (!ev.empty()) {
    auto [t, c] = ev.top();
    ev.pop();
    if (pos[c] >= cur[c].size()) {  // take the next item
      bool got = false;
      if (queue) {
        if (claimed < items.size()) cur_item[c] = items[claimed++], got = true;
      } else {
        while (next[c] < items.size() && !valid(items[next[c]])) next[c] += ctas, t += kSkipCost;
        if (next[c] < items.size()) cur_item[c] = items[next[c]], next[c] += ctas, got = true;
      }
      if (!got) {
        makespan = std::max(makespan, t);
        continue;
      }
      cur[c] = stream(cur_item[c]);
      pos[c] = 0;
      t += kItemCost;
      work += kItemCost + cur[c].size();
    }
    const long key = (static_cast<long>(cur_item[c].b) * hkv + cur_item[c].hk) * 4096 + cur[c][pos[c]++];
    ++reads;
    auto f = where.find(key);
    if (f != where.end()) {
      ++hits;
      lru.erase(f->second);
    } else if (static_cast<long>(lru.size()) >= cap) {
      where.erase(lru.back());
      lru.pop_back();
    }
    lru.push_front(key);
    where[key] = lru.begin();
    ev.push({t + 1.0, c});
  }
  std::printf("%s d=%.2f %s%s L2 %.0f MB, %d CTAs%s: L2 hits %.3f of %ld block reads, makespan / ideal %.3f\n",
              argv[1], d, queue ? "queue" : "static", queue ? (" (sections of " + std::to_string(section) + ")").c_str() : "",
              l2_mb, ctas, pair ? ", pair tiles" : "", static_cast<double>(hits) / reads, reads, makespan / (work / ctas));
  return 0;
}
