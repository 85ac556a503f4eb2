"""Re-evaluates saved condensed bundles with 3 GCNs each (the --eval-runs 3 default), seeds s*100+r."""
import glob, os, re, statistics, sys, torch
from gkdfast.data import load
from gkdfast.condense import load_condensed, train_and_test, prepare_features
from gkdfast.condense.condenser import sparse_if_mostly_zero
d = load(os.environ.get("GKDFAST_DATA", "../shared/data") + "/planetoid", name="cora")
x = sparse_if_mostly_zero(prepare_features(d.x))
per_seed = []
for path in sorted(glob.glob(sys.argv[1] + "/*.npz")):
    s = int(re.search(r"seed(\d+)", path).group(1))
    gd = load_condensed(path).to_graphdata()
    accs = [train_and_test(gd.x, gd.graph, gd.y, torch.arange(gd.num_nodes), d, x, seed=s * 100 + r).test_acc
            for r in range(3)]
    per_seed.append(statistics.fmean(accs))
    print(path, [round(100 * a, 2) for a in accs], round(100 * per_seed[-1], 2), flush=True)
print("mean", round(100 * statistics.fmean(per_seed), 2), "std", round(100 * statistics.pstdev(per_seed), 2))
