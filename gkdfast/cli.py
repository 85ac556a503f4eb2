"""The ``gkdfast`` command: ``info`` (backends), ``distill`` (the main job), ``bench``."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args) -> int:
    import gkdfast

    info = gkdfast.backend_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"gkdfast {info['version']}  (torch {info['torch']}, torch CUDA {info['torch_cuda']})")
    print(f"native extension: {'loaded' if info['extension_loaded'] else 'NOT loaded: ' + str(info['load_error'])}")
    print(f"compiled with CUDA: {info['compiled_with_cuda']}   CUDA device: {info['cuda_device']}")
    print(f"threads: OpenMP {info['openmp_threads']}, torch {info['torch_threads']}   mode: {info['mode']}")
    for name, b in info["backends"].items():
        status = "available" if b["available"] else "not used: " + "; ".join(b["reasons"])
        print(f"  backend {name:<9} {status}")
    if info["ops"]:
        print("ops:")
        for op, keys in info["ops"].items():
            print(f"  {op:<28} {', '.join(keys) if keys else '(no kernel)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gkdfast", description="Fast, exact knowledge distillation on graphs.")
    sub = p.add_subparsers(dest="command")
    pi = sub.add_parser("info", help="which backends and kernels are available, and why not")
    pi.add_argument("--json", action="store_true", help="print the full backend_info() as JSON")
    pi.set_defaults(func=_cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError) as exc:
        print(f"gkdfast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
