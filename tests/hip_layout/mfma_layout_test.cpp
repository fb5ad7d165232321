// CPU test of the MFMA data layouts used by the HIP kernels (csrc/common/hip_mfma.h,
// csrc/attention/hip/fwd_layout_hip.h). Built and run by tests/test_hip_layout.py (g++, no HIP).
//
// The instruction model below is written from AMD's CDNA3 ISA documentation (MI300 ISA Reference
// Guide, chapter 7 "Matrix Arithmetic Instructions"; cross-checked entry by entry against AMD's matrix
// instruction calculator, `--architecture cdna3`, a few of whose lines are pinned literally below). It is
// deliberately independent of the kernels' fragment-index functions: the test distributes matrices
// into lanes with the kernels' functions, runs the model, reads the result back with the kernels'
// functions and compares with a plain matmul. The attention tile test repeats, lane by lane, what
// gemm_s / gemm_o / load_kv_tile do (same LDS address functions, same register choices) and checks
// S^T = K Q^T and O^T = V^T P^T, plus the LDS bank model (8 lanes per cycle for 16-byte reads,
// 32 lanes for 4-byte writes, 32 banks of 4 bytes).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "attention/hip/fwd_layout_hip.h"
#include "attention/hip/bwd_layout_hip.h"
#include "decode/hip/decode_layout_hip.h"

using namespace seer;

static int failures = 0;
#define CHECK(cond, ...)                      \
  do {                                        \
    if (!(cond)) {                            \
      if (failures++ < 20) {                  \
        std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
        std::printf(__VA_ARGS__);             \
        std::printf("\n");                    \
      }                                       \
    }                                         \
  } while (0)

// ---- ISA model --------------------------------------------------------------------------------------
// v_mfma_f32_32x32x8_{bf16,f16}: A 32x8, B 8x32, lane l holds A[l % 32][4 (l / 32) + e] and
// B[4 (l / 32) + e][l % 32] (e = 0..3); D register r of lane l is D[8 (r / 4) + 4 (l / 32) + r % 4][l % 32].
// v_mfma_f32_16x16x16_{bf16,f16}: lane l holds A[l % 16][4 (l / 16) + e], B[4 (l / 16) + e][l % 16];
// D register r of lane l is D[4 (l / 16) + r][l % 16].
struct Isa {
  int M, N, K, regs;
  int a_lane(int i, int k) const { return M == 32 ? i + 32 * (k / 4) : i + 16 * (k / 4); }
  int b_lane(int k, int j) const { return M == 32 ? j + 32 * (k / 4) : j + 16 * (k / 4); }
  int elem(int k) const { return k % 4; }
  void d_pos(int lane, int r, int& i, int& j) const {
    if (M == 32) { i = 8 * (r / 4) + 4 * (lane / 32) + r % 4; j = lane % 32; }
    else { i = 4 * (lane / 16) + r; j = lane % 16; }
  }
  // D = A B + C on per-lane registers a[64][4], b[64][4], c[64][regs].
  void run(const float (*a)[4], const float (*b)[4], std::vector<float>& c) const {
    std::vector<double> d(M * N, 0.0);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double acc = 0;
        for (int k = 0; k < K; ++k) acc += double(a[a_lane(i, k)][elem(k)]) * b[b_lane(k, j)][elem(k)];
        d[i * N + j] = acc;
      }
    for (int l = 0; l < 64; ++l)
      for (int r = 0; r < regs; ++r) {
        int i, j;
        d_pos(l, r, i, j);
        c[l * regs + r] += float(d[i * N + j]);
      }
  }
};
static const Isa kIsa32{32, 32, 8, 16};
static const Isa kIsa16{16, 16, 16, 4};

// Literal lines of the calculator (cdna3, v_mfma_f32_32x32x8_bf16 / 16x16x16_bf16, --matrix-layout).
static void check_isa_literals() {
  int i, j;
  kIsa32.d_pos(0, 4, i, j);  CHECK(i == 8 && j == 0, "32x32 D lane 0 v4 = D[8][0]");
  kIsa32.d_pos(1, 15, i, j); CHECK(i == 27 && j == 1, "32x32 D lane 1 v15 = D[27][1]");
  kIsa32.d_pos(33, 0, i, j); CHECK(i == 4 && j == 1, "32x32 D lane 33 v0 = D[4][1]");
  CHECK(kIsa32.a_lane(1, 3) == 1 && kIsa32.elem(3) == 3, "32x32 A lane 1 v1.hi = A[1][3]");
  CHECK(kIsa32.b_lane(5, 0) == 32 && kIsa32.elem(5) == 1, "32x32 B lane 32 v0.hi = B[5][0]");
  kIsa16.d_pos(17, 2, i, j); CHECK(i == 6 && j == 1, "16x16 D lane 17 v2 = D[6][1]");
  CHECK(kIsa16.a_lane(3, 13) == 51, "16x16 A[3][13] in lane 51");
}

// ---- plain tile GEMM through the kernels' fragment functions ------------------------------------------
template <typename F>
static void check_tile_gemm(const Isa& isa, const char* name, std::mt19937& rng) {
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> A(isa.M * isa.K), B(isa.K * isa.N), C(isa.M * isa.N);
  for (auto& x : A) x = U(rng);
  for (auto& x : B) x = U(rng);
  for (auto& x : C) x = U(rng);
  float a[64][4], b[64][4];
  std::vector<float> c(64 * isa.regs);
  std::set<std::pair<int, int>> seen_a, seen_b, seen_c;
  for (int l = 0; l < 64; ++l) {
    for (int e = 0; e < 4; ++e) {
      a[l][e] = A[F::a_row(l) * isa.K + F::a_k(l, e)];
      b[l][e] = B[F::b_k(l, e) * isa.N + F::b_col(l)];
      seen_a.insert({F::a_row(l), F::a_k(l, e)});
      seen_b.insert({F::b_k(l, e), F::b_col(l)});
    }
    for (int r = 0; r < isa.regs; ++r) {
      c[l * isa.regs + r] = C[F::c_row(l, r) * isa.N + F::c_col(l)];
      seen_c.insert({F::c_row(l, r), F::c_col(l)});
    }
  }
  CHECK(int(seen_a.size()) == isa.M * isa.K && int(seen_b.size()) == isa.K * isa.N &&
            int(seen_c.size()) == isa.M * isa.N, "%s: fragment maps are not bijections", name);
  isa.run(a, b, c);
  double max_err = 0;
  for (int l = 0; l < 64; ++l)
    for (int r = 0; r < isa.regs; ++r) {
      const int i = F::c_row(l, r), j = F::c_col(l);
      double ref = C[i * isa.N + j];
      for (int k = 0; k < isa.K; ++k) ref += double(A[i * isa.K + k]) * B[k * isa.N + j];
      max_err = std::fmax(max_err, std::fabs(ref - c[l * isa.regs + r]));
    }
  CHECK(max_err < 1e-4, "%s: tile GEMM differs from the matmul by %g", name, max_err);
  std::printf("  %-28s fragment maps bijective, tile GEMM max error %.2e\n", name, max_err);
}

// ---- the forward attention tile of one wavefront --------------------------------------------------------
// 16-byte group of 8 consecutive elements starting at `off`, split into the two 4-element operands.
static void split8(const std::vector<float>& lds, int off, float (&lo)[4], float (&hi)[4]) {
  for (int e = 0; e < 4; ++e) lo[e] = lds[off + e], hi[e] = lds[off + 4 + e];
}

template <int D, int kN>
static void check_attention_tile(std::mt19937& rng) {
  using namespace seer::hipattn;
  using F = mfma::M32x32x8;
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> Q(32 * D), K(kN * D), V(kN * D);
  for (auto& x : Q) x = U(rng);
  for (auto& x : K) x = U(rng);
  for (auto& x : V) x = U(rng);

  // LDS as load_kv_tile writes it. K: row r, 16-byte chunk c at k_lds<D>(r, 8c).
  std::vector<float> sK(kN * D, NAN), sVt(kN * D, NAN);
  std::set<int> used;
  for (int r = 0; r < kN; ++r)
    for (int c = 0; c < D / 8; ++c) {
      const int off = k_lds<D>(r, 8 * c);
      CHECK(off % 8 == 0 && off >= 0 && off + 8 <= kN * D && used.insert(off).second, "K lds chunk collision");
      for (int e = 0; e < 8; ++e) sK[off + e] = K[r * D + 8 * c + e];
    }
  used.clear();
  // V^T: lane pair (2j, 2j + 1) x dims 8dc .. 8dc + 7 -> one word per dim at vt_lds<kN>(d, 2j).
  for (int j = 0; j < kN / 2; ++j)
    for (int dc = 0; dc < D / 8; ++dc)
      for (int e = 0; e < 8; ++e) {
        const int d = 8 * dc + e, off = vt_lds<kN>(d, 2 * j);
        CHECK(off % 2 == 0 && off >= 0 && off + 2 <= kN * D && used.insert(off).second, "V^T lds word collision");
        sVt[off] = V[(2 * j) * D + d];
        sVt[off + 1] = V[(2 * j + 1) * D + d];
      }
  // 16-byte reads: the 8 elements at vt_lds(d, key0) are keys key0 .. key0 + 7 of row d.
  for (int d = 0; d < D; ++d)
    for (int k0 = 0; k0 < kN; k0 += 8)
      for (int e = 0; e < 8; ++e) CHECK(vt_lds<kN>(d, k0) + e == vt_lds<kN>(d, k0 + e), "V^T 16-byte group");

  // gemm_s: S^T halves.
  constexpr int kHalves = kN / 32;
  std::vector<float> s(kHalves * 64 * 16, 0.f);
  for (int t = 0; t < kHalves; ++t) {
    std::vector<float> acc(64 * 16, 0.f);
    for (int j = 0; j < D / 16; ++j) {
      float a0[64][4], a1[64][4], b0[64][4], b1[64][4];
      for (int l = 0; l < 64; ++l) {
        const int h = l / 32, row = 32 * t + key_of_srow(F::a_row(l));
        split8(sK, k_lds<D>(row, 16 * j + 8 * h), a0[l], a1[l]);
        for (int e = 0; e < 4; ++e) {  // q[j] = Q[b_col][16 j + 8 h .. + 7]
          b0[l][e] = Q[F::b_col(l) * D + 16 * j + 8 * h + e];
          b1[l][e] = Q[F::b_col(l) * D + 16 * j + 8 * h + 4 + e];
        }
      }
      kIsa32.run(a0, b0, acc);
      kIsa32.run(a1, b1, acc);
    }
    for (int i = 0; i < 64 * 16; ++i) s[t * 64 * 16 + i] = acc[i];
  }
  double err_s = 0;
  for (int l = 0; l < 64; ++l)
    for (int t = 0; t < kHalves; ++t)
      for (int r = 0; r < 16; ++r) {
        const int q = F::c_col(l), key = key_of_acc(l, t, r);
        double ref = 0;
        for (int d = 0; d < D; ++d) ref += double(Q[q * D + d]) * K[key * D + d];
        err_s = std::fmax(err_s, std::fabs(ref - s[(t * 64 + l) * 16 + r]));
      }
  CHECK(err_s < 1e-3, "D %d N %d: S^T differs from K Q^T by %g", D, kN, err_s);

  // gemm_o with P = S (the GEMM is linear; softmax does not change the layout).
  std::vector<float> o(D / 32 * 64 * 16, 0.f);
  for (int nt = 0; nt < D / 32; ++nt) {
    std::vector<float> acc(64 * 16, 0.f);
    for (int t = 0; t < kHalves; ++t)
      for (int m = 0; m < 2; ++m) {
        float a0[64][4], a1[64][4], p0[64][4], p1[64][4];
        for (int l = 0; l < 64; ++l) {
          const int d = 32 * nt + F::a_row(l);
          split8(sVt, vt_lds<kN>(d, vt_key0(l, t, m)), a0[l], a1[l]);
          const int s0 = 4 * t + 2 * m, s1 = s0 + 1;  // pf[4t + 2m (+1)] = registers 4s .. 4s + 3 of half t
          for (int e = 0; e < 4; ++e) {
            p0[l][e] = s[(t * 64 + l) * 16 + 4 * (s0 % 4) + e];
            p1[l][e] = s[(t * 64 + l) * 16 + 4 * (s1 % 4) + e];
          }
        }
        kIsa32.run(a0, p0, acc);
        kIsa32.run(a1, p1, acc);
      }
    for (int i = 0; i < 64 * 16; ++i) o[nt * 64 * 16 + i] = acc[i];
  }
  double err_o = 0;
  for (int l = 0; l < 64; ++l)
    for (int nt = 0; nt < D / 32; ++nt)
      for (int r = 0; r < 16; ++r) {
        const int q = F::c_col(l), d = 32 * nt + F::c_row(l, r);
        double ref = 0;
        for (int key = 0; key < kN; ++key) {
          double sv = 0;
          for (int dd = 0; dd < D; ++dd) sv += double(Q[q * D + dd]) * K[key * D + dd];
          ref += sv * V[key * D + d];
        }
        err_o = std::fmax(err_o, std::fabs(ref - o[(nt * 64 + l) * 16 + r]) / (1 + std::fabs(ref)));
      }
  CHECK(err_o < 1e-3, "D %d N %d: O^T differs from (Q K^T) V by %g", D, kN, err_o);

  // LDS bank model: 16-byte reads are served 8 lanes at a time; a conflict-free group touches 8
  // distinct 4-bank groups (32 banks x 4 bytes; offsets here are in 2-byte elements).
  auto bank4 = [](int elem_off) { return ((elem_off * 2) / 16) % 8; };
  int conflicts = 0;
  for (int g = 0; g < 8; ++g) {
    for (int t = 0; t < kHalves; ++t)
      for (int j = 0; j < D / 16; ++j) {
        std::set<int> banks;
        for (int l = 8 * g; l < 8 * g + 8; ++l)
          banks.insert(bank4(k_lds<D>(32 * t + key_of_srow(F::a_row(l)), 16 * j + 8 * (l / 32))));
        conflicts += banks.size() != 8;
      }
    for (int nt = 0; nt < D / 32; ++nt)
      for (int t = 0; t < kHalves; ++t)
        for (int m = 0; m < 2; ++m) {
          std::set<int> banks;
          for (int l = 8 * g; l < 8 * g + 8; ++l) banks.insert(bank4(vt_lds<kN>(32 * nt + F::a_row(l), vt_key0(l, t, m))));
          conflicts += banks.size() != 8;
        }
  }
  CHECK(conflicts == 0, "D %d N %d: %d conflicting 8-lane groups in the MFMA operand reads", D, kN, conflicts);
  // K tile writes: 8 consecutive lanes write the 8 chunks of one key row.
  int wconf = 0;
  for (int r = 0; r < kN; ++r) {
    std::set<int> banks;
    for (int c = 0; c < 8; ++c) banks.insert(bank4(k_lds<D>(r, 8 * c)));
    wconf += banks.size() != 8;
  }
  CHECK(wconf == 0, "D %d: K tile writes conflict", D);
  std::printf("  attention tile D %3d, %2d keys: S^T err %.2e, O^T rel err %.2e, conflicting LDS read groups %d\n", D,
              kN, err_s, err_o, conflicts);
}

// ---- the decode tile of one wavefront (16 q heads x 16 keys, v_mfma_f32_16x16x16) -----------------------
template <int D>
static void check_decode_tile(std::mt19937& rng) {
  using namespace seer::hipdecode;
  using F = mfma::M16x16x16;
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> Q(16 * D), K(16 * D), V(16 * D);
  for (auto& x : Q) x = U(rng);
  for (auto& x : K) x = U(rng);
  for (auto& x : V) x = U(rng);
  // S^T = K Q^T: lane reads K[a_row][dim0 .. + 7] and Q[b_col][dim0 .. + 7], elements 0-3 / 4-7 to steps 0 / 1.
  std::vector<float> s(64 * 4, 0.f);
  for (int j = 0; j < D / 32; ++j) {
    float a0[64][4], a1[64][4], b0[64][4], b1[64][4];
    for (int l = 0; l < 64; ++l)
      for (int e = 0; e < 4; ++e) {
        a0[l][e] = K[F::a_row(l) * D + dim0(l, j) + e];
        a1[l][e] = K[F::a_row(l) * D + dim0(l, j) + 4 + e];
        b0[l][e] = Q[F::b_col(l) * D + dim0(l, j) + e];
        b1[l][e] = Q[F::b_col(l) * D + dim0(l, j) + 4 + e];
      }
    kIsa16.run(a0, b0, s);
    kIsa16.run(a1, b1, s);
  }
  double err_s = 0;
  for (int l = 0; l < 64; ++l)
    for (int r = 0; r < 4; ++r) {
      double ref = 0;
      for (int d = 0; d < D; ++d) ref += double(K[F::c_row(l, r) * D + d]) * Q[F::c_col(l) * D + d];
      err_s = std::fmax(err_s, std::fabs(ref - s[l * 4 + r]));
    }
  CHECK(err_s < 1e-3, "decode D %d: S^T differs from K Q^T by %g", D, err_s);
  // V^T slice as the kernel writes it (key pairs x 8 dims, one word per dim), then O^T = V^T P^T with
  // P^T = the S^T registers as they lie.
  std::vector<float> vt(D * kVtStride, NAN);
  for (int j = 0; j < 8; ++j)
    for (int d = 0; d < D; ++d) {
      vt[vt_lds(d, 2 * j)] = V[(2 * j) * D + d];
      vt[vt_lds(d, 2 * j + 1)] = V[(2 * j + 1) * D + d];
    }
  double err_o = 0;
  int conflicts = 0;
  for (int nt = 0; nt < D / 16; ++nt) {
    std::vector<float> o(64 * 4, 0.f);
    float a[64][4], b[64][4];
    for (int l = 0; l < 64; ++l)
      for (int e = 0; e < 4; ++e) {
        a[l][e] = vt[vt_lds(16 * nt + F::a_row(l), F::a_k(l, 0)) + e];
        b[l][e] = s[l * 4 + e];
      }
    kIsa16.run(a, b, o);
    for (int l = 0; l < 64; ++l)
      for (int r = 0; r < 4; ++r) {
        const int d = 16 * nt + F::c_row(l, r), h = F::c_col(l);
        double ref = 0;
        for (int key = 0; key < 16; ++key) {
          double sv = 0;
          for (int dd = 0; dd < D; ++dd) sv += double(K[key * D + dd]) * Q[h * D + dd];
          ref += sv * V[key * D + d];
        }
        err_o = std::fmax(err_o, std::fabs(ref - o[l * 4 + r]) / (1 + std::fabs(ref)));
      }
    // 8-byte reads, 16 lanes per cycle: the 32 banks (4 bytes) are each hit once.
    for (int g = 0; g < 4; ++g) {
      std::set<int> banks;
      for (int l = 16 * g; l < 16 * g + 16; ++l) {
        const int w = vt_lds(16 * nt + F::a_row(l), F::a_k(l, 0)) / 2;
        banks.insert(w % 32);
        banks.insert((w + 1) % 32);
      }
      conflicts += banks.size() != 32;
    }
  }
  CHECK(err_o < 1e-3, "decode D %d: O^T differs from (K Q^T)^T V by %g", D, err_o);
  CHECK(conflicts == 0, "decode D %d: %d conflicting 16-lane groups in the V^T reads", D, conflicts);
  std::printf("  decode tile D %3d, 16 keys: S^T err %.2e, O^T rel err %.2e, conflicting LDS read groups %d\n", D,
              err_s, err_o, conflicts);
}

// ---- the backward tile of one wavefront (32 keys x 32 rows, v_mfma_f32_32x32x8) ---------------------------
// As attention_bwd_kernel_hip: S = Q K^T (A = Q rows key_of_srow(i) from LDS, B = K fragments), then
// dV = P^T dO with P^T from the S accumulators and dO^T from LDS, and dQ_w = dS K_w with dS through the
// wavefront's LDS slice and K_w^T fragments. P = S and dS = S here (the element-wise step keeps layouts).
// Largest |ref - acc| / (1 + |ref|) over the 32 x 32 accumulator tile acc (64 lanes x 16 values, layout
// F) of output columns [32 nt, 32 nt + 32); ref(row, column) is the float64 value.
template <typename F, typename Ref>
static double c_tile_rel_err(const std::vector<float>& acc, int nt, Ref ref_of) {
  double err = 0;
  for (int l = 0; l < 64; ++l)
    for (int r = 0; r < 16; ++r) {
      const double ref = ref_of(F::c_row(l, r), 32 * nt + F::c_col(l));
      err = std::fmax(err, std::fabs(ref - acc[l * 16 + r]) / (1 + std::fabs(ref)));
    }
  return err;
}

template <int D>
static void check_bwd_tile(std::mt19937& rng) {
  using namespace seer::hipattn;
  using F = mfma::M32x32x8;
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> Q(32 * D), K(32 * D), G(32 * D);  // G = dO
  for (auto& x : Q) x = U(rng);
  for (auto& x : K) x = U(rng);
  for (auto& x : G) x = U(rng);
  // LDS as load_row_tile writes it: row-major k_lds<D> and transposed vt_lds<32> (row pairs x 8 dims).
  std::vector<float> sQ(32 * D), sGt(32 * D);
  for (int r = 0; r < 32; ++r)
    for (int c = 0; c < D / 8; ++c)
      for (int e = 0; e < 8; ++e) sQ[k_lds<D>(r, 8 * c) + e] = Q[r * D + 8 * c + e];
  for (int j = 0; j < 16; ++j)
    for (int d = 0; d < D; ++d) {
      sGt[vt_lds<kBwdRows>(d, 2 * j)] = G[(2 * j) * D + d];
      sGt[vt_lds<kBwdRows>(d, 2 * j + 1)] = G[(2 * j + 1) * D + d];
    }
  std::vector<float> S(64 * 16, 0.f);
  for (int j = 0; j < D / 16; ++j) {
    float a0[64][4], a1[64][4], b0[64][4], b1[64][4];
    for (int l = 0; l < 64; ++l) {
      const int h = l / 32;
      split8(sQ, k_lds<D>(key_of_srow(F::a_row(l)), 16 * j + 8 * h), a0[l], a1[l]);
      for (int e = 0; e < 4; ++e) {  // kA[j] = K[lane % 32][16 j + 8 h ..]
        b0[l][e] = K[(l % 32) * D + 16 * j + 8 * h + e];
        b1[l][e] = K[(l % 32) * D + 16 * j + 8 * h + 4 + e];
      }
    }
    kIsa32.run(a0, b0, S);
    kIsa32.run(a1, b1, S);
  }
  auto sref = [&](int row, int key) {
    double v = 0;
    for (int d = 0; d < D; ++d) v += double(Q[row * D + d]) * K[key * D + d];
    return v;
  };
  double err_s = 0;
  for (int l = 0; l < 64; ++l)
    for (int r = 0; r < 16; ++r)
      err_s = std::fmax(err_s, std::fabs(sref(key_of_srow(F::c_row(l, r)), F::c_col(l)) - S[l * 16 + r]));
  CHECK(err_s < 1e-3, "bwd D %d: S differs from Q K^T by %g", D, err_s);
  // dV = P^T dO (P = S).
  double err_v = 0;
  for (int nt = 0; nt < D / 32; ++nt) {
    std::vector<float> acc(64 * 16, 0.f);
    for (int m = 0; m < 2; ++m) {
      float p0[64][4], p1[64][4], g0[64][4], g1[64][4];
      for (int l = 0; l < 64; ++l) {
        split8(sGt, vt_lds<kBwdRows>(32 * nt + F::b_col(l), 16 * m + 8 * (l / 32)), g0[l], g1[l]);
        for (int e = 0; e < 4; ++e) p0[l][e] = S[l * 16 + 4 * (2 * m) + e], p1[l][e] = S[l * 16 + 4 * (2 * m + 1) + e];
      }
      kIsa32.run(p0, g0, acc);
      kIsa32.run(p1, g1, acc);
    }
    err_v = std::fmax(err_v, c_tile_rel_err<F>(acc, nt, [&](int key, int d) {
      double ref = 0;
      for (int row = 0; row < 32; ++row) ref += sref(row, key) * G[row * D + d];
      return ref;
    }));
  }
  CHECK(err_v < 1e-3, "bwd D %d: dV differs from P^T dO by %g", D, err_v);
  // dQ_w = dS K_w (dS = S): dS slice written from the accumulators, read as A; K_w^T fragments as B.
  std::vector<float> ds(32 * kDsStride, NAN);
  for (int l = 0; l < 64; ++l)
    for (int r = 0; r < 16; ++r) ds[ds_lds(key_of_srow(F::c_row(l, r)), l % 32)] = S[l * 16 + r];
  double err_q = 0;
  int conflicts = 0;
  for (int nt = 0; nt < D / 32; ++nt) {
    std::vector<float> acc(64 * 16, 0.f);
    for (int st = 0; st < 4; ++st) {
      float a[64][4], kb[64][4];
      for (int l = 0; l < 64; ++l)
        for (int e = 0; e < 4; ++e) {
          a[l][e] = ds[ds_lds(F::a_row(l), 8 * st + 4 * (l / 32)) + e];
          kb[l][e] = K[(F::b_k(l, e) + 8 * st) * D + 32 * nt + l % 32];
        }
      kIsa32.run(a, kb, acc);
      for (int g = 0; g < 4; ++g) {  // 8-byte reads, 16 lanes per cycle
        std::set<int> banks;
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int w = ds_lds(F::a_row(l), 8 * st + 4 * (l / 32)) / 2;
          banks.insert(w % 32);
          banks.insert((w + 1) % 32);
        }
        conflicts += banks.size() != 32;
      }
    }
    err_q = std::fmax(err_q, c_tile_rel_err<F>(acc, nt, [&](int row, int d) {
      double ref = 0;
      for (int key = 0; key < 32; ++key) ref += sref(row, key) * K[key * D + d];
      return ref;
    }));
  }
  CHECK(err_q < 1e-3, "bwd D %d: dQ differs from dS K by %g", D, err_q);
  CHECK(conflicts == 0, "bwd D %d: %d conflicting dS read groups", D, conflicts);
  std::printf("  backward tile D %3d: S err %.2e, dV rel err %.2e, dQ rel err %.2e, conflicting dS read groups %d\n", D,
              err_s, err_v, err_q, conflicts);
}

int main() {
  std::mt19937 rng(1234);
  check_isa_literals();
  check_tile_gemm<mfma::M32x32x8>(kIsa32, "v_mfma_f32_32x32x8", rng);
  check_tile_gemm<mfma::M16x16x16>(kIsa16, "v_mfma_f32_16x16x16", rng);
  // key_of_srow is a permutation of 0..31 with the property the V^T reads rely on.
  {
    std::set<int> keys;
    for (int i = 0; i < 32; ++i) keys.insert(hipattn::key_of_srow(i));
    CHECK(keys.size() == 32 && *keys.begin() == 0 && *keys.rbegin() == 31, "key_of_srow is not a permutation");
  }
  // Pooling's chunk_max: registers 8c .. 8c + 7 of lanes l and l ^ 32 hold the 16 keys 16c .. 16c + 15.
  for (int l = 0; l < 32; ++l)
    for (int c = 0; c < 2; ++c) {
      std::set<int> keys;
      for (int r = 8 * c; r < 8 * c + 8; ++r) {
        keys.insert(hipattn::key_of_acc(l, 0, r));
        keys.insert(hipattn::key_of_acc(l + 32, 0, r));
      }
      CHECK(keys.size() == 16 && *keys.begin() == 16 * c && *keys.rbegin() == 16 * c + 15,
            "pooling chunk %d of lane %d", c, l);
    }
  check_attention_tile<64, 64>(rng);
  check_attention_tile<128, 32>(rng);
  check_attention_tile<128, 64>(rng);
  check_attention_tile<256, 32>(rng);
  check_bwd_tile<64>(rng);
  check_bwd_tile<128>(rng);
  check_decode_tile<64>(rng);
  check_decode_tile<128>(rng);
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all MFMA layout checks passed\n");
  return 0;
}
