"""``egom2p db info PATH [--version N|TAG]`` and ``egom2p db tag PATH NAME [--version N]``: token DB tools.

``info`` prints the versions and tags, rows per dataset x modality (a coverage table like the
paper's Table 1), token counts, tokenizer identities and lineage of the chosen version.
"""

from __future__ import annotations

import json
import sys

from ..modalities import MODALITIES


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
    tokens = {m: sum(c[m] for c in counts.values()) * db.registry[m].num_tokens for m in MODALITIES}
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
    print("\ncoverage (clips per dataset x modality):")
    print(f"  {'dataset':<16}{'clips':>8}" + "".join(f"{m:>8}" for m in MODALITIES))
    tot = {m: 0 for m in ("clips", *MODALITIES)}
    for d, c in info["coverage"].items():
        print(f"  {d:<16}{c['clips']:>8}" + "".join(f"{c[m]:>8}" for m in MODALITIES))
        for k in tot:
            tot[k] += c[k]
    print(f"  {'total':<16}{tot['clips']:>8}" + "".join(f"{tot[m]:>8}" for m in MODALITIES))
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
