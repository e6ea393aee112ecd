"""What the GitHub-hosted sources share: a repository at a pinned commit, fetched file by file.

:meth:`GitHubCheckout.open` places ``<data_dir>/<source>/<commit[:7]>``; :meth:`~GitHubCheckout.fetch`
downloads the files that are missing (a failure becomes :class:`SourceUnavailable`
with the remedy); :meth:`~GitHubCheckout.metadata_rows` is the manifest of a source
whose ``metadata.csv`` has a row per image (ieee8023, actualmed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from helpers.data.download import DownloadError, fetch_files
from helpers.data.registry import Prepared, SourceUnavailable, manifest, mixed_patient_note, read_metadata

GITHUB_RAW = "https://raw.githubusercontent.com"


def github_raw(repo: str, commit: str) -> str:
    """The address of ``repo``'s raw files at ``commit``."""
    return f"{GITHUB_RAW}/{repo}/{commit}"


@dataclass(frozen=True)
class GitHubCheckout:
    """The files of ``repo`` at ``commit``, kept under ``root`` and fetched on demand from ``base_url``."""

    source: str
    repo: str
    commit: str
    root: Path
    base_url: str
    retries: int = 4
    progress: bool = True

    @classmethod
    def open(
        cls, data_dir: Path, *, source: str, repo: str, commit: str, base_url: str | None = None,
        retries: int = 4, progress: bool = True,
    ) -> GitHubCheckout:
        """``base_url`` replaces raw.githubusercontent.com (a mirror, or the tests' local server)."""
        base_url = (base_url or github_raw(repo, commit)).rstrip("/")
        return cls(source, repo, commit, Path(data_dir) / source / commit[:7], base_url, retries, progress)

    def fetch(self, paths: Iterable[str]) -> None:
        """Download the files at ``paths`` (relative to the repository) that are not there yet."""
        jobs = [(f"{self.base_url}/{quote(path)}", self.root / path) for path in paths]
        try:
            fetch_files(jobs, retries=self.retries, progress=self.progress, desc=self.source)
        except DownloadError as error:
            raise SourceUnavailable(
                f"{self.source} is unavailable: {error} Remedy: check your connection, or download "
                f"https://github.com/{self.repo} at commit {self.commit} manually into {self.root}, "
                "or use DATASET='synthetic'."
            ) from error

    def metadata(self, path: str = "metadata.csv") -> pd.DataFrame:
        """The repository's metadata CSV (fetched once), as stripped strings with lowercased headers."""
        self.fetch([path])
        return read_metadata(self.root / path)

    def metadata_rows(
        self, table: pd.DataFrame, notes: list[str], *, paths: list[str], findings: dict[str, str], modality: str,
        **extra,
    ) -> Prepared:
        """Fetch the images at ``paths`` and return one manifest row per row of ``table``.

        ``table`` has the columns ``patientid, finding, view, sex, age``; ``extra`` adds columns.
        """
        self.fetch(paths)
        rows = manifest(
            path=paths,
            label=table["finding"].map(findings).tolist(),
            patient_id=(f"{self.source}:" + table["patientid"]).tolist(),
            source=self.source,
            modality=modality,
            view=table["view"].tolist(),
            sex=table["sex"].where(table["sex"].isin(["M", "F"]), "").tolist(),
            age=table["age"].tolist(),
            finding=table["finding"].tolist(),
            **extra,
        )
        return Prepared(self.root, rows, notes + mixed_patient_note(self.source, rows))
