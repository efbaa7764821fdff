import json,os,statistics as st
R="."
for s in (0,1,2):
    acc=[];rand=[];meds=[]
    for t in (0,1,2):
        f=f"{R}/results_default_seed{s}_train{t}.json"
        if os.path.exists(f): acc.append(json.load(open(f))["results"][0]["meta_test"]["mean"]*100)
        g=f"{R}/results_random_matched_seed{s}_train{t}.json"
        if os.path.exists(g):
            d=json.load(open(g)); vals=[r["meta_test"]["mean"]*100 for r in d["results"]]; rand+=vals; meds.append(st.median(vals))
    print(f"s{s} searched {[round(a,2) for a in acc]} mean {st.mean(acc):.2f} | random medians per t {[round(m,2) for m in meds]} | median of {len(rand)} random {st.median(rand):.2f} -> {'WIN' if st.mean(acc)>st.median(rand) else 'lose'}")
