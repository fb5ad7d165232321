"""Queue model behind branch wip/bwd-interleave: two consumers of one K/V-tile CTA share a ring of
kStages row-tile stages; each processes its own tiles in ring order (1 time unit each) and skips the
other's at once; a stage refills when both released the stage kStages earlier. Prints the makespan over
the ideal (the busier consumer's tile count) for candidate order and for the alternating order."""
import random
def run(owners, stages=3):
    # owners: list of 0,1,2(both). each consumer processes tiles in order; tile i available when tile i-stages released by both.
    n=len(owners); rel=[[None]*n for _ in range(2)]; t=[0.0,0.0]
    # process in order of index; each consumer's release times computed greedily
    avail=[0.0]*n
    for i in range(n):
        if i>=stages: avail[i]=max(rel[0][i-stages],rel[1][i-stages])
        for c in range(2):
            start=max(t[c],avail[i])
            if owners[i]==c or owners[i]==2:
                t[c]=start+1.0
            else:
                t[c]=start
            rel[c][i]=t[c]
    return max(t)
def gen(d, ncand):
    o=[]
    for _ in range(ncand):
        a=random.random()<d; b=random.random()<d
        if a and b: o.append(2)
        elif a: o.append(0)
        elif b: o.append(1)
    return o
def interleave(bt):
    # one batch: tiles both keep first, then the two consumers' own tiles alternating
    S=[x for x in bt if x==2]; A=[x for x in bt if x==0]; B=[x for x in bt if x==1]
    m=min(len(A),len(B))
    return S+[0,1]*m+A[m:]+B[m:]
random.seed(1)
for d in (1.0,0.5,0.2,0.1):
    r1=r2=ideal=0
    for trial in range(200):
        cands=2048
        # batches of 128 candidates
        o=[]; oi=[]
        for s in range(0,cands,128):
            b=gen(d,128); o+=b; oi+=interleave(b)
        r1+=run(o); r2+=run(oi)
        na=sum(1 for x in o if x in (0,2)); nb=sum(1 for x in o if x in (1,2)); ideal+=max(na,nb)
    print(f"d={d}: candidate order {r1/ideal:.3f}x ideal, interleaved {r2/ideal:.3f}x ideal")
