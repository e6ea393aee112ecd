"""Unpacking a downloaded zip so that a half extraction is never taken as done."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

from helpers.data.registry import SourceUnavailable, is_image_name


def unzip_images(archive: Path, target: Path, *, source: str) -> None:
    """Extract the images of ``archive`` flat into ``target`` (through ``<target>.part``, then one rename).

    A damaged zip is deleted, so that the next run downloads it again.
    """
    staging = target.with_name(target.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = re.split(r"[\\/]", member.filename)[-1]
                if member.is_dir() or "__MACOSX" in member.filename or not is_image_name(name):
                    continue
                with bundle.open(member) as packed, open(staging / name, "wb") as unpacked:
                    shutil.copyfileobj(packed, unpacked)
    except zipfile.BadZipFile as error:
        shutil.rmtree(staging)
        archive.unlink()
        raise SourceUnavailable(
            f"{source}: {archive} is not a valid zip file ({error}); it was deleted: run again to download it "
            "anew, and if that repeats, download it by hand from the repository into the same place."
        ) from error
    os.replace(staging, target)
