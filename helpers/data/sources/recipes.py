"""Recipes: several sources registered as one dataset (``xray-github``)."""

from __future__ import annotations

from helpers.data.registry import Source, combine, register

RECIPES = {"xray-github": ("ieee8023", "actualmed")}

for _name, _parts in RECIPES.items():
    register(Source(
        _name, "xray", f"{' + '.join(_parts)} together (two sources: mind the source shortcut)", license="per part",
        size="the sum of its parts", homepage="", prepare=combine(_parts),
    ))
