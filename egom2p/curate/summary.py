"""The run summary: sequences seen, clips written/skipped, quarantined, per-modality coverage (paper Table 1).

Written as ``OUT/<dataset>.summary.json`` and ``OUT/<dataset>.summary.png`` (coverage bars),
rendered as markdown (the Prefect artifact) and as console text.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from .. import modality, storage, tables


@dataclass
class RunSummary:
    dataset: str
    run_id: str
    raw: str
    table: str
    depth: str
    started: str
    finished: str = ""
    duration_s: float = 0.0
    sequences_seen: int = 0  # discovered (after --limit)
    sequences_failed: int = 0  # quarantined at discover or split (unusable or could not be opened)
    windows: int = 0  # 2-second windows in the sequences seen
    clips_planned: int = 0  # windows not yet in the table at the start of the run
    clips_written: int = 0
    clips_skipped: int = 0  # already in the table (finished by an earlier run)
    quarantined: int = 0  # records this run wrote
    quarantined_by_stage: dict = field(default_factory=dict)
    written_by_modality: dict = field(default_factory=dict)  # clips of this run having each modality
    table_clips: int = 0  # rows of this dataset in the table after the run
    coverage: dict = field(default_factory=dict)  # {modality: clips of this dataset having it} in the table
    table_version: int | None = None

    def coverage_fraction(self) -> dict[str, float]:
        return {m: (self.coverage.get(m, 0) / self.table_clips if self.table_clips else 0.0) for m in modality.names()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coverage_fraction"] = self.coverage_fraction()
        return d

    def write_json(self, path: str | os.PathLike, options: dict | None = None) -> None:
        """Write the summary (a local path or an object-store URI); readers never see a half-written one."""
        storage.write_bytes(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode(), options)

    def to_markdown(self) -> str:
        frac = self.coverage_fraction()
        lines = [
            f"# Curation of `{self.dataset}`",
            "",
            f"run `{self.run_id}`, {self.duration_s:.1f} s, depth annotator `{self.depth}`",
            "",
            "| sequences seen | failed | windows | planned | written | skipped (done before) | quarantined |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.sequences_seen} | {self.sequences_failed} | {self.windows} | {self.clips_planned} | "
            f"{self.clips_written} | {self.clips_skipped} | {self.quarantined} |",
            "",
            f"Modality coverage of `{self.table}` ({self.table_clips} clips of {self.dataset}"
            f", Lance version {self.table_version}):",
            "",
            "| modality | clips | coverage | written this run |",
            "|---|---:|---:|---:|",
        ]
        for m in modality.names():
            lines.append(f"| {m} | {self.coverage.get(m, 0)} | {100 * frac[m]:.0f}% | {self.written_by_modality.get(m, 0)} |")
        if self.quarantined:
            lines += ["", "Quarantined by stage: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.quarantined_by_stage.items()))]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        frac = self.coverage_fraction()
        cov = "  ".join(f"{m} {self.coverage.get(m, 0)} ({100 * frac[m]:.0f}%)" for m in modality.names())
        text = (f"curate {self.dataset}: {self.sequences_seen} sequences seen ({self.sequences_failed} failed), "
                f"{self.clips_written} clips written, {self.clips_skipped} skipped (already done), "
                f"{self.quarantined} quarantined, {self.duration_s:.1f} s\n"
                f"  table {self.table}: {self.table_clips} clips; coverage: {cov}")
        if self.quarantined:
            text += "\n  quarantined by stage: " + ", ".join(f"{k} {v}" for k, v in sorted(self.quarantined_by_stage.items()))
        return text

    def plot(self, path: str | os.PathLike, options: dict | None = None) -> None:
        """Coverage bars (clips per modality, like the paper's Table 1) as a PNG (a local path or a URI)."""
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
        counts = [self.coverage.get(m, 0) for m in modality.names()]
        bars = ax.bar(modality.names(), counts, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
        ax.bar_label(bars, labels=[f"{100 * f:.0f}%" for f in self.coverage_fraction().values()])
        ax.set_ylabel("clips")
        ax.set_ylim(0, max(1, self.table_clips) * 1.15)
        ax.set_title(f"{self.dataset}: {self.table_clips} clips, {self.quarantined} quarantined this run")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        storage.write_bytes(path, buf.getvalue(), options)


def table_coverage(table_path: str, dataset: str, options: dict | None = None) -> tuple[int, dict[str, int], int | None]:
    """(clips of ``dataset`` in the table, {modality: clips having it}, Lance version); zeros if no table."""
    if not tables.exists(table_path, options):
        return 0, {m: 0 for m in modality.names()}, None
    import pyarrow.compute as pc

    from ..clips import clips_index

    version = int(tables.open_table(table_path, options=options).version)
    index = clips_index(table_path, version=version, options=options)
    index = index.filter(pc.equal(index.column("dataset"), dataset))
    cov = {m: int(pc.sum(index.column(f"has_{m}")).as_py() or 0) if f"has_{m}" in index.column_names else 0
           for m in modality.names()}
    return index.num_rows, cov, version
