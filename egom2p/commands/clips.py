"""``egom2p clips info PATH``: what a clips table holds (rows per dataset, split and modality)."""

from __future__ import annotations

from collections import Counter


def register(sub) -> None:
    p = sub.add_parser("clips", help="inspect clips tables")
    csub = p.add_subparsers(dest="clips_command", metavar="ACTION", required=True)
    info = csub.add_parser("info", help="rows per dataset/split and modality coverage of a clips table")
    info.add_argument("path", help="a clips table (DIR/<dataset>.lance)")
    info.add_argument("--version", type=int, default=None, help="Lance version to read (default: latest)")
    info.set_defaults(func=run_info)


def coverage_rows(index) -> list[tuple[str, str, int, dict[str, int]]]:
    """(dataset, split, clips, {modality: clips having it}) for a clips index table."""
    rows = index.to_pylist()
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["split"]), []).append(r)
    out = []
    for (dataset, split), rs in sorted(groups.items()):
        counts = Counter()
        for r in rs:
            for flag in (k for k in r if k.startswith("has_")):  # one per registered modality (clips_index)
                counts[flag[4:]] += bool(r[flag])
        out.append((dataset, split, len(rs), dict(counts)))
    return out


def run_info(args) -> int:
    from ..clips import ClipsTableError, clips_index
    from ..tables import open_as

    index = clips_index(args.path, version=args.version)  # ClipsTableError naming the table (missing, damaged)
    ds = open_as(ClipsTableError, "clips table", args.path)
    print(f"{args.path}: {index.num_rows} clips, Lance version {args.version or ds.version} "
          f"(latest {ds.version}, {len(ds.versions())} versions)")
    mods = [k[4:] for k in index.column_names if k.startswith("has_")]  # the registered modalities, in order
    print(f"{'dataset':<14}{'split':<8}{'clips':>7}" + "".join(f"{m:>7}" for m in mods))
    for dataset, split, n, c in coverage_rows(index):
        print(f"{dataset:<14}{split:<8}{n:>7}" + "".join(f"{c.get(m, 0):>7}" for m in mods))
    return 0
