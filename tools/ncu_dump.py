#!/usr/bin/env python3
"""Dump an Nsight Compute report (.ncu-rep) without ncu and without the protobuf package.

Usage:
  python3 ncu_dump.py FILE [substring ...]
        every metric of every result as `name = value` (only names containing one of the
        substrings when given).  Instanced metrics (per-PC, per-opcode, PM-sampling series ...)
        print their stored aggregate, or, when none is stored, `sum(...)` of the instances.
  python3 ncu_dump.py FILE --lists [substring ...]
        also print every instance value of instanced metrics ([correlation id] value).
  python3 ncu_dump.py FILE --sass [--all] [--enc] [--top N] [--lines] [substring ...]
        per-instruction table from the source-counter data: offset, opcode (recovered, see below),
        CUDA source line (from the cubin's DWARF .debug_line, if built with -lineinfo),
        inst_executed, pcsamp samples and the non-zero stall reasons.  Rows with no samples and
        no executions are hidden unless --all.  --top N: only the N PCs with most samples.
        --enc: raw 128-bit encoding.  --lines: also aggregate samples per source line.
        --wide: also the thread_inst_executed / derived__avg_thread* per-PC columns.
        Row columns: thr = avg active (predicated-on) threads per executed warp instr (shown if != 32),
        mem = memory space/access/size-in-bits (codes decoded: 4 global, 16 shared, 20 LDGSTS),
        m_* / d_* = memory_* / derived__* per-PC metrics (wavefronts, L2 sectors, bank-conflict n-way ...).
        substrings restrict the per-PC columns that are printed (matched on metric names).
  python3 ncu_dump.py FILE --info      launch info, sections and rule results (messages) only.

Values are raw (base units as stored by ncu: time in ns, sizes in bytes, rates per second, pct in %).

SASS text: the report stores only the cubin (ELF), not disassembly, and no nvdisasm is
available, so instructions are labelled by opcode only.  Opcodes are recovered from the low 9
bits of each 128-bit instruction word using a table for sm_90 that was derived by matching
per-PC inst_executed sums against the report's own sass__inst_executed_per_opcode metric
(and is re-checked against it every run; mismatches print a warning).

File layout (little endian) as decoded here:
  b'NVR\\0' | u32 n | FileHeader{1:Version}
  repeated block: u32 n | BlockHeader{1:NumSources 2:NumResults 3:SessionDetails
                                      4:StringTable{1: repeated string} 5:PayloadSize 6:Process}
                  then PayloadSize bytes = NumSources x (u32 n | SourceData)
                                         + NumResults x (u32 n | ProfileResult)
  SourceData:    1 Reference, 4 Binary (cubin ELF), 5 SassLevel, 6 SMRevision,
                 9 repeated {1 mangled name, 2 load address, 3 id}
  ProfileResult: 1 ThreadID 2 APICallID 3 ProgramHandle 4 KernelID 5 mangled 6 function
                 7 demangled 8 WorkDimensions 9/10/11 offset/grid/block {1 x 2 y 3 z}
                 13 repeated MetricResult{1 NameId (index into the block's StringTable)
                                          2 Value 3 repeated {1 CorrelationId, 2 Value} 4 kind}
                 15 SourceData{1 Reference} 17 Sections 19 RuleResults 22 ContextID 23 StreamID
  Value:         1 string 2 float 3 double 4 uint32 5 uint64 (other varints: ints)
"""
import sys, struct
from collections import defaultdict

# ----------------------------------------------------------------------------- protobuf wire
def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return r, i

def parse(b):
    """Decode one protobuf message -> list of (field, wiretype, value)."""
    i, n, out = 0, len(b), []
    while i < n:
        k, i = varint(b, i)
        f, wt = k >> 3, k & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            L, i = varint(b, i); v = b[i:i + L]; i += L
        elif wt == 1:
            v = b[i:i + 8]; i += 8
        elif wt == 5:
            v = b[i:i + 4]; i += 4
        else:
            raise ValueError('unsupported wire type %d at %d' % (wt, i))
        out.append((f, wt, v))
    return out

def fdict(b):
    d = {}
    for f, wt, v in (parse(b) if isinstance(b, (bytes, bytearray)) else b):
        d.setdefault(f, []).append(v)
    return d

def first(d, f, default=None):
    return d[f][0] if f in d else default

def sstr(b):
    return b.decode('utf-8', 'replace') if isinstance(b, (bytes, bytearray)) else b

def value(b):
    """MetricValue message -> python value."""
    val = None
    for f, wt, v in parse(b):
        if f == 1 and wt == 2:
            val = sstr(v)
        elif wt == 5:
            val = struct.unpack('<f', v)[0]
        elif wt == 1:
            val = struct.unpack('<d', v)[0]
        elif wt == 0:
            if v >= 1 << 63: v -= 1 << 64
            val = v
        elif wt == 2:
            val = v
    return val

def fmt(v):
    if isinstance(v, float):
        if v != v or v in (float('inf'), float('-inf')): return repr(v)
        if v == int(v) and abs(v) < 1e15: return '%d' % int(v)
        return '%.6g' % v
    if isinstance(v, (bytes, bytearray)): return '<%d bytes>' % len(v)
    if isinstance(v, str): return repr(v)
    return str(v)

# ----------------------------------------------------------------------------- report container
def read_report(path):
    d = open(path, 'rb').read()
    if d[:4] != b'NVR\0':
        raise SystemExit('%s: not an ncu-rep file (magic %r)' % (path, d[:4]))
    L = struct.unpack_from('<I', d, 4)[0]
    version = first(fdict(d[8:8 + L]), 1)
    p = 8 + L
    sources, results = [], []
    while p + 4 <= len(d):
        L = struct.unpack_from('<I', d, p)[0]
        bh = fdict(d[p + 4:p + 4 + L]); p += 4 + L
        ns, nr, ps = first(bh, 1, 0), first(bh, 2, 0), first(bh, 5, 0)
        strings = [sstr(v) for f, wt, v in parse(bh[4][0]) if f == 1] if 4 in bh else []
        q = p
        for k in range(ns + nr):
            L2 = struct.unpack_from('<I', d, q)[0]
            ent = d[q + 4:q + 4 + L2]; q += 4 + L2
            if k < ns: sources.append(fdict(ent))
            else: results.append((ent, strings))
        p += ps
    return version, sources, results

def u3(b):
    d = fdict(b or b''); return tuple(first(d, i, 0) for i in (1, 2, 3))

def decode_result(ent, strings):
    r = fdict(ent)
    info = {
        'mangled': sstr(first(r, 5, b'')), 'function': sstr(first(r, 6, b'')),
        'demangled': sstr(first(r, 7, b'')),
        'grid': u3(first(r, 10)), 'block': u3(first(r, 11)),
        'kernel_id': first(r, 4), 'api_call_id': first(r, 2), 'context': first(r, 22), 'stream': first(r, 23),
        'source_ref': first(fdict(first(r, 15, b'')), 1),
        'sections': r.get(17, []), 'rules': r.get(19, []),
    }
    metrics = []
    for mb in r.get(13, []):
        m = fdict(mb)
        nid = first(m, 1, 0)
        name = strings[nid] if nid < len(strings) else '<name#%d>' % nid
        val = value(first(m, 2)) if 2 in m else None
        lst = []
        for eb in m.get(3, []):
            e = fdict(eb)
            lst.append((value(first(e, 1)) if 1 in e else None, value(first(e, 2)) if 2 in e else None))
        metrics.append((name, val, lst, first(m, 4, 0)))
    return info, metrics

# ----------------------------------------------------------------------------- metric printing
def isnum(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)

def metric_line(name, val, lst):
    if lst and val is None:
        vals = [e for c, e in lst]
        if len(lst) == 1:
            return '%s = %s' % (name, fmt(vals[0]))
        if all(isnum(v) for v in vals):
            return '%s = sum(%d instances) %s  [min %s max %s]' % (
                name, len(vals), fmt(sum(vals)), fmt(min(vals)), fmt(max(vals)))
        return '%s = <%d instances>' % (name, len(vals))
    s = '%s = %s' % (name, fmt(val))
    if len(lst) > 1:
        s += '  [%d instances]' % len(lst)
    return s

def print_metrics(metrics, subs, show_lists):
    for name, val, lst, kind in sorted(metrics, key=lambda x: x[0]):
        if subs and not any(s in name for s in subs):
            continue
        print(metric_line(name, val, lst))
        if show_lists and len(lst) > 1:
            for c, e in lst:
                print('    [%s] %s' % (hex(c) if isinstance(c, int) and c > 1 << 32 else fmt(c), fmt(e)))

def print_info(info):
    for sb in info['sections']:
        s = fdict(sb)
        print('  section %-45s %s' % (sstr(first(s, 1, b'')), sstr(first(s, 2, b''))))
    for rb in info['rules']:
        r = fdict(rb)
        print('  rule %s (%s) [section %s]' % (sstr(first(r, 1, b'')), sstr(first(r, 2, b'')), sstr(first(r, 4, b''))))
        # messages are nested: Body{Items{Message{Message text}}}; collect all long strings
        texts = []
        def walk(b, depth):
            try: m = parse(b)
            except Exception: return
            for f, wt, v in m:
                if wt == 2 and depth < 8:
                    if len(v) > 40 and all(32 <= c < 127 or c in (9, 10) for c in v[:200]):
                        texts.append(v.decode('ascii', 'replace'))
                    else:
                        walk(v, depth + 1)
        if 3 in r: walk(r[3][0], 0)
        for t in texts:
            print('      ' + t.replace('\n', ' '))

# ----------------------------------------------------------------------------- ELF / DWARF
def elf_sections(elf):
    shoff = struct.unpack_from('<Q', elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', elf, 0x3a)
    secs = [struct.unpack_from('<IIQQQQIIQQ', elf, shoff + i * shentsize) for i in range(shnum)]
    so = secs[shstrndx][4]
    out = []
    for sh in secs:
        nm = elf[so + sh[0]:elf.index(b'\0', so + sh[0])].decode()
        out.append({'name': nm, 'type': sh[1], 'off': sh[4], 'size': sh[5], 'link': sh[6], 'info': sh[7]})
    return out

def elf_symbols(elf, secs):
    syms = []
    for s in secs:
        if s['type'] == 2:   # SHT_SYMTAB
            strtab = secs[s['link']]['off']
            for i in range(s['size'] // 24):
                n, info, other, shndx, val, sz = struct.unpack_from('<IBBHQQ', elf, s['off'] + i * 24)
                syms.append({'name': elf[strtab + n:elf.index(b'\0', strtab + n)].decode(),
                             'shndx': shndx, 'value': val, 'size': sz, 'type': info & 15})
    return syms

def uleb(b, i):
    return varint(b, i)

def sleb(b, i):
    r, j = varint(b, i)
    bits = 7 * (j - i)
    return (r - (1 << bits) if b[j - 1] & 0x40 else r), j

def cstr(b, i):
    j = b.index(b'\0', i); return b[i:j].decode('utf-8', 'replace'), j + 1

def dwarf_lines(elf, secs, syms):
    """-> {text section index: [(offset, file, line), ...]} from .debug_line (DWARF 2-4)."""
    idx = {s['name']: k for k, s in enumerate(secs)}
    if '.debug_line' not in idx:
        return {}
    dl = secs[idx['.debug_line']]
    d = elf[dl['off']:dl['off'] + dl['size']]
    relocs = {}   # offset in .debug_line -> symbol
    for s in secs:
        if s['type'] == 4 and s['info'] == idx['.debug_line']:
            for i in range(s['size'] // 24):
                ro, rinfo, add = struct.unpack_from('<QQq', elf, s['off'] + i * 24)
                relocs[ro] = (syms[rinfo >> 32], add)
    out = defaultdict(list)
    p = 0
    while p + 4 <= len(d):
        ulen = struct.unpack_from('<I', d, p)[0]; end = p + 4 + ulen
        ver = struct.unpack_from('<H', d, p + 4)[0]
        hlen = struct.unpack_from('<I', d, p + 6)[0]
        q = p + 10; prog = q + hlen
        min_inst = d[q]; q += 1
        if ver >= 4: q += 1
        def_stmt = d[q]; lbase = struct.unpack('b', d[q + 1:q + 2])[0]; lrange = d[q + 2]; opbase = d[q + 3]; q += 4
        oplens = list(d[q:q + opbase - 1]); q += opbase - 1
        dirs = ['']
        while d[q]:
            s_, q = cstr(d, q); dirs.append(s_)
        q += 1
        files = ['?']
        while d[q]:
            s_, q = cstr(d, q)
            di, q = uleb(d, q); _, q = uleb(d, q); _, q = uleb(d, q)
            files.append((dirs[di] + '/' if di < len(dirs) and dirs[di] else '') + s_)
        q = prog
        addr, fil, line, sec = 0, 1, 1, None
        while q < end:
            op = d[q]; q += 1
            if op >= opbase:
                a = op - opbase
                addr += (a // lrange) * min_inst; line += lbase + a % lrange
                out[sec].append((addr, files[fil] if fil < len(files) else '?', line))
            elif op == 0:
                n, q = uleb(d, q); sub = d[q]; body = q + 1; q += n
                if sub == 1:
                    addr, fil, line = 0, 1, 1
                elif sub == 2:
                    addr = struct.unpack_from('<Q', d, body)[0] if n == 9 else struct.unpack_from('<I', d, body)[0]
                    if body in relocs:
                        sym, add = relocs[body]
                        sec = sym['shndx']; addr = sym['value'] + add
            elif op == 1:
                out[sec].append((addr, files[fil] if fil < len(files) else '?', line))
            elif op == 2:
                a, q = uleb(d, q); addr += a * min_inst
            elif op == 3:
                a, q = sleb(d, q); line += a
            elif op == 4:
                fil, q = uleb(d, q)
            elif op == 5:
                _, q = uleb(d, q)
            elif op == 8:
                addr += ((255 - opbase) // lrange) * min_inst
            elif op == 9:
                addr += struct.unpack_from('<H', d, q)[0]; q += 2
            elif op in (6, 7, 10, 11):
                pass
            else:
                for _ in range(oplens[op - 1]):
                    _, q = uleb(d, q)
        p = end
    for k in out:
        out[k].sort()
    return out

# ----------------------------------------------------------------------------- SASS opcodes (sm_90)
# low 9 bits of the first 64-bit word -> mnemonic.  Derived/validated against
# sass__inst_executed_per_opcode of the reports; '?' suffix = not validated by executed counts.
OPCODES_SM90 = {
    0x002: 'MOV', 0x003: 'MOV?', 0x005: 'CS2R', 0x007: 'SEL', 0x008: 'FSEL', 0x009: 'FMNMX',
    0x00b: 'FSETP', 0x00c: 'ISETP', 0x010: 'IADD3', 0x011: 'LEA', 0x012: 'LOP3', 0x013: 'IABS',
    0x019: 'SHF', 0x01c: 'PLOP3?', 0x020: 'FMUL', 0x021: 'FADD', 0x023: 'FFMA', 0x024: 'IMAD',
    0x025: 'IMAD.WIDE', 0x027: 'IMAD.HI', 0x02d: 'PREEXIT|ACQBULK', 0x02e: 'PREEXIT|ACQBULK',
    0x036: 'VIADD', 0x03b: 'LDSM', 0x03c: 'HMMA', 0x03e: 'F2FP', 0x046: 'VIADDMNMX', 0x048: 'VIMNMX',
    0x082: 'UMOV', 0x090: 'UIADD3', 0x091: 'ULEA', 0x099: 'USHF', 0x0a4: 'UIMAD', 0x0a5: 'UIMAD.WIDE',
    0x0b9: 'ULDC', 0x0ca: 'R2UR', 0x105: 'F2I', 0x106: 'I2F', 0x108: 'MUFU', 0x118: 'NOP',
    0x119: 'S2R', 0x11a: 'DEPBAR', 0x11d: 'BAR', 0x141: 'BSYNC', 0x144: 'CALL?', 0x145: 'BSSY',
    0x147: 'BRA', 0x148: 'WARPSYNC', 0x14d: 'EXIT', 0x150: 'RET?', 0x181: 'LDG', 0x182: 'LDC',
    0x184: 'LDS', 0x186: 'STG', 0x188: 'STS', 0x189: 'SHFL', 0x1ae: 'LDGSTS', 0x1af: 'LDGDEPBAR',
    0x1c3: 'S2UR',
}

def base_op(m):
    return m.rstrip('?').split('.')[0]

def check_opcodes(code, pcs_exec, per_opcode):
    """Compare table-derived executed counts per opcode with sass__inst_executed_per_opcode.
    Also try to name unknown codes whose totals uniquely match an unexplained opcode."""
    tot = defaultdict(float)
    unknown = defaultdict(float)
    for off, c in pcs_exec.items():
        if off + 16 > len(code): continue
        op = struct.unpack_from('<Q', code, off)[0] & 0x1ff
        m = OPCODES_SM90.get(op)
        if m is None: unknown[op] += c
        else:
            for alt in m.split('|'):
                tot[base_op(alt)] += c / len(m.split('|'))
    extra = {}
    missing = {k: v - tot.get(k, 0) for k, v in per_opcode.items() if abs(v - tot.get(k, 0)) > 0.5}
    for op, c in unknown.items():
        cands = [k for k, v in missing.items() if abs(v - c) < 0.5]
        if len(cands) == 1:
            extra[op] = cands[0] + '~'
            missing.pop(cands[0])
        elif c > 0:
            extra[op] = 'op_%03x' % op
    bad = [k for k, v in per_opcode.items() if abs(v - tot.get(k, 0)) > 0.5 and k not in
           [e.rstrip('~') for e in extra.values()]]
    return extra, bad

MEM_HINT = 'memory_'
STALL_PREFIX = 'smsp__pcsamp_warps_issue_stalled_'

def sass_report(info, metrics, sources, subs, opts):
    M = {}
    for name, val, lst, kind in metrics:
        M.setdefault(name, (val, lst))
    src = None
    for s in sources:
        if first(s, 1) == info['source_ref']: src = s
    if src is None and sources: src = sources[0]
    if src is None or 4 not in src:
        print('  (no SASS binary stored in this report)'); return
    elf = src[4][0]
    if elf[:4] != b'\x7fELF':
        print('  (source binary is not an ELF cubin)'); return
    secs = elf_sections(elf)
    syms = elf_symbols(elf, secs)
    tidx = [k for k, s in enumerate(secs) if s['name'] == '.text.' + info['mangled']]
    if not tidx:
        print('  (kernel text section not found in cubin)'); return
    tidx = tidx[0]; text = secs[tidx]
    code = elf[text['off']:text['off'] + text['size']]
    # load address of the function
    base = None
    if 'launch__function_pcs' in M:
        v, l = M['launch__function_pcs']
        base = l[0][1] if l else v
    for fb in src.get(9, []):
        f = fdict(fb)
        if sstr(first(f, 1, b'')) == info['mangled']: base = first(f, 2, base)
    sm = first(src, 6)
    print('  cubin: %d bytes, sm revision 0x%x, kernel text %d bytes (%d instructions), load address 0x%x'
          % (len(elf), sm or 0, len(code), len(code) // 16, base))
    # per-PC metrics: instanced by integer PCs inside the function
    lo, hi = base, base + len(code)
    perpc = {}
    for name, (val, lst) in M.items():
        if lst and all(isinstance(c, int) and lo <= c < hi for c, e in lst):
            perpc[name] = {c - base: e for c, e in lst}
    if not perpc:
        print('  (no per-instruction metrics in this report)'); return
    inst = perpc.get('inst_executed', {})
    per_opcode = dict(M.get('sass__inst_executed_per_opcode', (None, []))[1])
    extra, bad = check_opcodes(code, inst, per_opcode)
    if bad:
        print('  WARNING: opcode table disagrees with sass__inst_executed_per_opcode for: %s' % ', '.join(sorted(bad)))
    def opname(off):
        op = struct.unpack_from('<Q', code, off)[0] & 0x1ff
        return OPCODES_SM90.get(op) or extra.get(op) or 'op_%03x' % op
    lines = dwarf_lines(elf, secs, syms).get(tidx, [])
    import bisect
    lkeys = [a for a, f, l in lines]
    def srcline(off):
        k = bisect.bisect_right(lkeys, off) - 1
        if k < 0: return ''
        f, l = lines[k][1], lines[k][2]
        return '%s:%d' % (f.rsplit('/', 1)[-1], l)
    stalls = sorted(n for n in perpc if n.startswith(STALL_PREFIX) and not n.endswith('_not_issued'))
    samples = perpc.get('smsp__pcsamp_sample_count', {})
    tot_samples = sum(samples.values()) or 1
    if opts.get('wide'):
        print('  per-PC metrics available: %s' % ', '.join(sorted(perpc)))
    print('  total pc samples: %d' % sum(samples.values()))
    # stall summary
    print('  stall reasons over all samples (all samples / not-issued samples):')
    for n in sorted(stalls, key=lambda n: -sum(perpc[n].values())):
        a = sum(perpc[n].values()); b = sum(perpc.get(n + '_not_issued', {}).values())
        if a or b:
            print('    %-28s %7d  %5.1f%%   not_issued %7d' % (n[len(STALL_PREFIX):], a, 100.0 * a / tot_samples, b))
    def summary(key, title, limit, width):  # samples / executions / stall reasons grouped by key(offset)
        agg = defaultdict(lambda: [0, 0, defaultdict(int)])
        for off in set(samples) | set(inst):
            k = key(off); agg[k][0] += samples.get(off, 0); agg[k][1] += inst.get(off, 0)
            for n in stalls:
                agg[k][2][n] += perpc[n].get(off, 0)
        print('  samples per %s (top %d):' % (title, limit))
        for k, (s_, ie, st) in sorted(agg.items(), key=lambda x: -x[1][0])[:limit]:
            top = sorted(((v, n[len(STALL_PREFIX):]) for n, v in st.items() if v), reverse=True)[:4]
            print('    %-*s samples %6d (%5.1f%%)  inst_executed %10d   %s' % (
                width, k, s_, 100.0 * s_ / tot_samples, ie, ' '.join('%s:%d' % (n, v) for v, n in top)))
    summary(lambda off: base_op(opname(off)), 'opcode', 25, 12)
    if opts.get('lines') and lines:
        summary(srcline, 'source line', 40, 36)
    # per-instruction rows
    HIDE = ('inst_executed', 'smsp__pcsamp_sample_count', 'memory_type', 'memory_access_type',
            'memory_access_size_type', 'derived__avg_thread_executed_true')
    other = [n for n in sorted(perpc) if n not in stalls and not n.endswith('_not_issued')
             and n not in HIDE
             and (opts.get('wide') or subs or not (n.startswith('derived__avg') or n.startswith('thread_inst')
                  or n.startswith('derived__derivative') or n.startswith('smsp__sass_inst_executed_memdesc')))
             and (not subs or any(s in n for s in subs))]
    MT = {4: 'global', 16: 'shared', 20: 'global->shared'}
    MA = {2: 'ld', 4: 'st', 6: 'ld+st'}
    def memtxt(off):
        t = perpc.get('memory_type', {}).get(off)
        if not t: return ''
        a = perpc.get('memory_access_type', {}).get(off); z = perpc.get('memory_access_size_type', {}).get(off)
        return 'mem=%s/%s/%sb ' % (MT.get(t, t), MA.get(a, a), z)
    offs = range(0, len(code), 16)
    if opts.get('top'):
        offs = sorted(sorted(samples, key=lambda o: -samples[o])[:opts['top']])
    print('  %-7s %-16s %-24s %10s %6s  %s' % ('offset', 'opcode', 'source', 'executed', 'samp', 'stall reasons (samples) | other per-PC metrics'))
    labels = {sy['value']: sy['name'] for sy in syms if sy['shndx'] == tidx and sy['type'] in (0, 2)
              and sy['name'] and not sy['name'].startswith('.')}
    for off in offs:
        if off in labels:
            print('  <%s>:' % labels[off])
        s_ = samples.get(off, 0); ie = inst.get(off)
        if not opts.get('all') and not s_ and not ie and not opts.get('top'):
            continue
        st = sorted(((perpc[n].get(off, 0), n[len(STALL_PREFIX):]) for n in stalls), reverse=True)
        stxt = ' '.join('%s:%d' % (n, v) for v, n in st if v)
        thr = perpc.get('derived__avg_thread_executed_true', {}).get(off)
        otxt = ('thr=%s ' % fmt(thr) if thr is not None and thr != 32 and ie else '') + memtxt(off) + \
            ' '.join('%s=%s' % (n.replace('memory_', 'm_').replace('derived__', 'd_'), fmt(perpc[n][off]))
                     for n in other if off in perpc[n] and perpc[n][off])
        enc = ''
        if opts.get('enc'):
            lo_, hi_ = struct.unpack_from('<QQ', code, off); enc = ' %016x%016x' % (hi_, lo_)
        print('  0x%05x %-16s %-24s %10s %6s  %s%s%s' % (off, opname(off), srcline(off),
              fmt(ie) if ie is not None else '-', s_ or '', stxt, (' | ' + otxt) if otxt else '', enc))

# ----------------------------------------------------------------------------- main
def main():
    args = sys.argv[1:]
    if not args or args[0] in ('-h', '--help'):
        print(__doc__); sys.exit(0 if args else 1)
    opts = {}
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == '--top':
            opts['top'] = int(args[i + 1]); i += 2; continue
        if a.startswith('--'):
            opts[a[2:]] = True
        else:
            rest.append(a)
        i += 1
    path, subs = rest[0], rest[1:]
    version, sources, results = read_report(path)
    print('# %s: format version %s, %d source(s), %d result(s)' % (path, version, len(sources), len(results)))
    for idx, (ent, strings) in enumerate(results):
        info, metrics = decode_result(ent, strings)
        print('=== result %d: %s' % (idx, info['function']))
        print('    demangled: %s' % info['demangled'])
        print('    grid %s block %s  context %s stream %s  (%d metrics)' % (
            info['grid'], info['block'], info['context'], info['stream'], len(metrics)))
        if opts.get('sass'):
            sass_report(info, metrics, sources, subs, opts)
        elif opts.get('info'):
            print_info(info)
        else:
            print_metrics(metrics, subs, opts.get('lists'))

if __name__ == '__main__':
    try:
        main()
    except BrokenPipeError:
        sys.stderr.close()
