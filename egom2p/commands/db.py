"""``egom2p db info PATH [--version N|TAG]`` and ``egom2p db tag PATH NAME [--version N]``: token DB tools.

``info`` prints the versions and tags, rows per dataset x modality (a coverage table like the
paper's Table 1), token counts, tokenizer identities and lineage of the chosen version.
``import-wds ROOT --out DB`` reads the official EgoM2P release's token shards
(``ROOT/<modality>/<dataset>/shard-NNNNNN.tar``) into a token DB; ``export-wds DB --out ROOT``
writes a token DB in that layout (:mod:`egom2p.wds`).
"""

from __future__ import annotations

import json
import sys

from ..modalities import MODALITIES  # the built-in four: the CLI's choices


def register(sub) -> None:
    p = sub.add_parser("db", help="inspect and tag token databases")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    i = dsub.add_parser("info", help="versions, tags, coverage, token counts, tokenizers and lineage")
    i.add_argument("path", help="token DB (tokens/NAME.lance)")
    i.add_argument("--version", default=None, help="Lance version number or tag (default: latest)")
    i.add_argument("--json", action="store_true", help="print the information as JSON")
    i.set_defaults(func=run_info)
    t = dsub.add_parser("tag", help="name a release: a Lance tag on a version")
    t.add_argument("path")
    t.add_argument("name")
    t.add_argument("--version", type=int, default=None, help="version to tag (default: latest)")
    t.set_defaults(func=run_tag)
    _register_wds(dsub)


def _version_arg(v):
    if v is None:
        return None
    return int(v) if str(v).isdigit() else str(v)


def db_info(path, version=None) -> dict:
    """Everything ``db info`` prints, as a dict (TokenDBError naming the DB when its data cannot be read)."""
    from ..tokendb import TokenDBError

    try:
        return _db_info(path, version)
    except (OSError, ValueError) as e:  # Lance raises OSError / pyarrow.ArrowInvalid (a ValueError) on damaged data
        if isinstance(e, TokenDBError):
            raise
        raise TokenDBError(f"{path}: cannot read the token DB, its data is damaged or unreadable "
                           f"({type(e).__name__}: {str(e)[:300]})") from e


def _db_info(path, version=None) -> dict:
    from ..tokendb import open_token_db

    db = open_token_db(path, _version_arg(version))
    latest = open_token_db(path)
    tags = latest.tags()
    counts = db.counts()
    per_ds_rows: dict[str, int] = {}
    for d in db.index().column("dataset").to_pylist():
        per_ds_rows[d] = per_ds_rows.get(d, 0) + 1
    tokens = {m: sum(c[m] for c in counts.values()) * db.registry[m].num_tokens for m in db.registry.names}
    versions = []
    for v in latest.versions():
        n = int(v["version"])
        versions.append({"version": n, "time": str(v["timestamp"]), "rows": int(v["metadata"].get("total_rows", 0)),
                         "tags": [t for t, tv in tags.items() if tv == n]})
    return {"path": str(path), "version": db.version, "latest": latest.version, "format": db.format,
            "registry": db.registry.config, "rows": db.num_rows,
            "coverage": {d: {"clips": per_ds_rows[d], **c} for d, c in counts.items()},
            "tokens": tokens, "tokenizers": db.tokenizers, "lineage": db.lineage, "versions": versions, "tags": tags}


def run_info(args) -> int:
    from ..tokendb import TokenDBError

    try:
        info = db_info(args.path, args.version)
    except TokenDBError as e:
        print(f"egom2p db info: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['path']}: version {info['version']} (latest {info['latest']}), {info['rows']} clips, "
          f"format {info['format']}, registry {info['registry']}")
    print("\nversions:")
    for v in info["versions"]:
        tag = f"  tags: {', '.join(v['tags'])}" if v["tags"] else ""
        mark = " *" if v["version"] == info["version"] else ""
        print(f"  {v['version']:>4}  {v['time'][:19]}  {v['rows']:>8} rows{tag}{mark}")
    mods = list(info["tokens"])  # the DB's registry, in its order
    print("\ncoverage (clips per dataset x modality):")
    print(f"  {'dataset':<16}{'clips':>8}" + "".join(f"{m:>8}" for m in mods))
    tot = {m: 0 for m in ("clips", *mods)}
    for d, c in info["coverage"].items():
        print(f"  {d:<16}{c['clips']:>8}" + "".join(f"{c[m]:>8}" for m in mods))
        for k in tot:
            tot[k] += c[k]
    print(f"  {'total':<16}{tot['clips']:>8}" + "".join(f"{tot[m]:>8}" for m in mods))
    print("\ntokens: " + ", ".join(f"{m} {n:,}" for m, n in info["tokens"].items()) +
          f" (total {sum(info['tokens'].values()):,})")
    print("\ntokenizers:")
    for m, ident in info["tokenizers"].items():
        print(f"  {m:<6} {ident.get('kind')}  sha256 {ident.get('sha256')}")
    print("\nlineage:")
    for e in info["lineage"]:
        print(f"  v{e.get('db_version')}: {e.get('clips')} @ Lance version {e.get('clips_version')} "
              f"(+{e.get('rows')} clips, {e.get('time')})")
    return 0


def run_tag(args) -> int:
    from ..tokendb import TokenDBError, tag

    try:
        v = tag(args.path, args.name, args.version)
    except TokenDBError as e:
        print(f"egom2p db tag: {e}", file=sys.stderr)
        return 2
    print(f"{args.path}: tag {args.name!r} -> version {v}")
    return 0


# --- the official release's WebDataset shards (egom2p.wds) ------------------------------------------


def _register_wds(dsub) -> None:
    w = dsub.add_parser("import-wds", help="read the official EgoM2P release's token shards into a token DB",
                        description="Read ROOT/<modality>/<dataset>/[token/]shard-NNNNNN.tar (the official EgoM2P "
                                    "release's WebDataset token shards) into a token DB with the base registry. "
                                    "Samples missing a modality of their dataset are skipped and reported; a "
                                    "misaligned or unsafe shard is reported and not imported.")
    w.add_argument("root", help="shard root: <root>/{rgb,depth,gaze,cam}/<dataset>/[token/]shard-NNNNNN.tar")
    w.add_argument("--out", required=True, help="token DB to create or append to (tokens/NAME.lance)")
    w.add_argument("--split", default="train", help="split of the imported clips (default train; the release "
                                                    "keeps validation shards under another root)")
    w.add_argument("--datasets", nargs="+", default=None, help="only these dataset folders")
    w.add_argument("--modalities", nargs="+", default=None, choices=MODALITIES, help="only these modalities")
    w.add_argument("--report", default=None, help="full report as JSON (default: <out without .lance>.import.json)")
    w.add_argument("--strict", action="store_true", help="exit 1 when anything was skipped or refused")
    w.set_defaults(func=run_import_wds)
    e = dsub.add_parser("export-wds", help="write a token DB as the official release's token shards",
                        description="Write OUT/<modality>/<dataset>/shard-NNNNNN.tar (one <key>.npz per clip, "
                                    "arr_0 = token ids) from a base-registry token DB, the same keys in the same "
                                    "order in every modality of a dataset, plus OUT/egom2p-wds.json (clip ids).")
    e.add_argument("path", help="token DB (tokens/NAME.lance)")
    e.add_argument("--out", required=True, help="output root (must not exist or be empty)")
    e.add_argument("--version", default=None, help="Lance version number or tag (default: latest)")
    e.add_argument("--datasets", nargs="+", default=None, help="only these datasets")
    e.add_argument("--modalities", nargs="+", default=None, choices=MODALITIES, help="only these modalities")
    e.add_argument("--split", default=None, help="only clips of this split (default: all)")
    e.add_argument("--shard-size", type=int, default=1000, help="samples per tar (default 1000, as the release)")
    e.set_defaults(func=run_export_wds)


def _print_wds_report(report, what: str, limit: int = 20) -> None:
    for ds in sorted(report.samples):
        print(f"  {ds:<16} {report.samples[ds]:>8} samples in {report.shards.get(ds, 0)} shard(s)")
    if report.issues:
        counts = report.to_dict()["counts"]
        print(f"{what}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
        for issue in report.issues[:limit]:
            print(f"  {issue.line()}")
        if len(report.issues) > limit:
            print(f"  ... {len(report.issues) - limit} more (see the report file)")


def run_import_wds(args) -> int:
    from pathlib import Path

    from ..tokendb import TokenDBError
    from ..wds import WdsError, import_shards

    try:
        report = import_shards(args.root, args.out, split=args.split, datasets=args.datasets,
                               modalities=args.modalities)
    except (WdsError, TokenDBError, ValueError) as e:
        print(f"egom2p db import-wds: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    rpath = Path(args.report) if args.report else out.with_name(out.name.removesuffix(".lance") + ".import.json")
    rpath.write_text(json.dumps(report.to_dict(), indent=1))
    total = sum(report.samples.values())
    versions = ", ".join(map(str, report.db_versions)) or "none (nothing new)"
    print(f"{args.root} -> {args.out}: {total} samples imported (DB version {versions}); report {rpath}")
    _print_wds_report(report, "reported and skipped")
    return 1 if args.strict and report.issues else 0


def run_export_wds(args) -> int:
    from ..tokendb import TokenDBError
    from ..wds import WdsError, export_shards

    try:
        report = export_shards(args.path, args.out, version=_version_arg(args.version), datasets=args.datasets,
                               modalities=args.modalities, split=args.split, shard_size=args.shard_size)
    except (WdsError, TokenDBError) as e:
        print(f"egom2p db export-wds: {e}", file=sys.stderr)
        return 2
    print(f"{args.path} -> {args.out}: {sum(report.samples.values())} samples")
    _print_wds_report(report, "skipped")
    return 0
