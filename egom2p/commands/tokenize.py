"""``egom2p tokenize --clips PATH... --tokenizers DIR --out tokens/NAME.lance``: run the ``tokenize`` flow here.

The flags are the fields of :class:`egom2p.tokenize_config.TokenizeConfig` (also the flow's parameters
and the deployment's defaults). Missing inputs or bad options are reported in one line on stderr with
exit code 2 before Prefect or Ray start. Uses Prefect's ephemeral API unless ``PREFECT_API_URL``
points at a server, and a local Ray unless ``RAY_ADDRESS`` points at a cluster; processes started for
the run end with it, even when it is killed. Re-running tokenizes only the clips missing from the DB;
every commit is a new Lance version with its lineage.
"""

from __future__ import annotations

from ._flows import error, run_flow


def register(sub) -> None:
    from ..runconfig import add_arguments
    from ..tokenize_config import TokenizeConfig

    p = sub.add_parser("tokenize", help="tokenize clips tables into a versioned token DB (Prefect flow on Ray Data)")
    add_arguments(p, TokenizeConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runconfig import ConfigError, from_args
    from ..tokenize_config import TokenizeConfig

    try:
        config = from_args(TokenizeConfig, args)
        config.check()
    except ConfigError as e:
        return error("tokenize", e)
    from ..clips import ClipsTableError
    from ..tokendb import TokenDBError
    from ..tokenizers import TokenizerError
    from ..tokenizers.cosmos import CosmosCheckpointError

    try:
        readable_tables(config)
        s = run_flow("tokenize", config)
    except (ClipsTableError, TokenDBError, TokenizerError, CosmosCheckpointError, ValueError) as e:
        return error("tokenize", e)
    print(f"{config.out}: version {s.get('version')}, {s.get('rows')} clips ({s['added']} added)")
    return 0


def readable_tables(config) -> None:
    """Read the clip ids of every input table and of an existing token DB (before Prefect and Ray start):
    a damaged table is one ClipsTableError / TokenDBError naming it."""
    from ..clips import existing_ids
    from ..tables import exists
    from ..tokendb import open_token_db

    for p in config.clips:
        existing_ids(p, options=config.options(p))
    if exists(config.out, config.options(config.out)):
        open_token_db(config.out, options=config.options(config.out)).clip_ids()
