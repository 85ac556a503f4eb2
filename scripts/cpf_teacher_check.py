"""The CPF teacher's aggregator, measured: SAGE(128) with PyG's mean + root weight vs DGL's "gcn"
aggregator (GLNN / NOSMOG's teacher), dropout 0 or 0.5, on the CPF protocol (largest connected
component, 20 / 30 per class per seed), test accuracy at the best-validation epoch.

Example (about 1 minute per dataset on one CPU thread)::

    python scripts/cpf_teacher_check.py --name cora --seeds 0,1,2
"""
import argparse
import os

import torch

from gkdfast.data import default_root, load
from gkdfast.distill import accuracy, recipes
from gkdfast.distill.distiller import call_model
from gkdfast.distill.experiment import ModelSpec, seed_split
from gkdfast.distill.protocols import prepare, published_settings

VARIANTS = {"mean, dropout 0": ModelSpec("sage", 128, 2, 0.0),
            "gcn, dropout 0": ModelSpec("sage", 128, 2, 0.0, (("aggr", "gcn"),)),
            "mean, dropout 0.5": ModelSpec("sage", 128, 2, 0.5),
            "gcn, dropout 0.5": ModelSpec("sage", 128, 2, 0.5, (("aggr", "gcn"),))}


def teacher_acc(spec, data, seed):
    """Test accuracy (%) of one teacher trained as the cpf setting trains it (lr 0.01, wd 5e-4)."""
    d = seed_split(data, seed)
    torch.manual_seed(seed)
    model = spec.build(d.x.size(1), d.num_classes)
    recipes.NoKD(lr=0.01, weight_decay=5e-4).fit(lambda f: model, d, None, seed)
    logits = call_model(model.eval(), d.x, d.graph, True, False)[0]
    return 100 * accuracy(logits, d.y, d.test_mask)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="cora", help="cora or citeseer (the CPF .npz file)")
    p.add_argument("--data", default=os.path.join(default_root(), "gnn_benchmark_npz"))
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    data = prepare(load(os.path.join(args.data, f"{args.name}.npz")), published_settings(args.name, ["glnn"])[0])
    seeds = [int(s) for s in args.seeds.split(",")]
    for label, spec in VARIANTS.items():
        accs = [teacher_acc(spec, data, s) for s in seeds]
        print(f"{args.name} SAGE(128) {label}: {sum(accs) / len(accs):.2f}  {[round(a, 1) for a in accs]}", flush=True)


if __name__ == "__main__":
    main()
