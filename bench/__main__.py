"""``python -m bench [--quick] [--out FILE] [--plots DIR]``: the whole benchmark in one run.

The local runner against sayiir, then Kubernetes mode through a fresh local control plane, then
the payload store's cost (inline against offloaded values, :mod:`bench.payloads`), then the
cost of tracing per step (off and on, :mod:`bench.tracing`). Prints a table, writes
``bench-results.json`` (machine and versions included) and PNG plots of the latency
distributions and of the scaling curve.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import k8s, local, payloads, tracing
from bench.report import plots, table


def machine() -> dict[str, Any]:
    import importlib.metadata as metadata

    from plait._devenv.binaries import ETCD_VERSION, KUBERNETES_VERSION

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kubernetes": KUBERNETES_VERSION,
        "etcd": ETCD_VERSION,
        "plait": version("plait"),
        "kopf": version("kopf"),
        "sayiir": version("sayiir"),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="where the JSON goes")
    parser.add_argument("--plots", type=Path, default=Path("bench-results"), help="directory for the PNG plots")
    args = parser.parse_args()
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    print("local runner: plait against sayiir ...")
    results["local"] = local.run(quick=args.quick)
    results.update(k8s.run(quick=args.quick))
    print("the payload store: inline against offloaded ...")
    results.update(payloads.run(quick=args.quick))
    results.update(tracing.run(quick=args.quick))
    results["plots"] = [str(p) for p in plots(results, args.plots)]
    results["machine"]["bench_seconds"] = round(time.monotonic() - started, 1)
    latencies = results.pop("_latencies")
    args.out.write_text(json.dumps(results, indent=2))
    (args.plots / "latencies.json").write_text(json.dumps(latencies))
    print(table(results))
    print(payloads.table(results))
    print(tracing.table(results))
    print(f"wrote {args.out} and {', '.join(results['plots'])} in {results['machine']['bench_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
