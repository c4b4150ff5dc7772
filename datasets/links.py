"""One symbolic-link policy for every importer.

Links users make are followed: a dataset assembled with links (``original/`` linked into a Copydays folder, a
reference farm of file links) is normal, so listings descend into linked folders (a link cycle ends where it
would revisit a folder above it). Every link an indexed file lies behind is recorded in the index
(``links.csv``: the link's path relative to the images root and its resolved target), so what was linked stays
visible after the import. A file whose link resolves outside every folder the user named (the dataset folder or
manifest's folder, and each distractor folder) is refused before it is read, unless the user allows it
(``allow_outside=True``, ``--allow-outside-links``): an index must not publish the size and sha256 of a file
nobody asked it to describe.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from copybench.io import is_image_file

from .errors import SourceError

ALLOW_FLAG = "--allow-outside-links"


def walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), descending into linked folders; a linked folder that
    resolves to one of its own ancestors (a cycle) is not entered again."""
    found: list[Path] = []
    chains = {str(folder): frozenset({os.path.realpath(folder)})}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        chain = chains.pop(dirpath)
        keep = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if real not in chain:
                chains[os.path.join(dirpath, name)] = chain | {real}
                keep.append(name)
        dirnames[:] = keep
        found += [p for p in (Path(dirpath, f) for f in filenames) if is_image_file(p)]
    return sorted(found)


@dataclass
class LinkPolicy:
    """Checks each indexed file against the named ``roots`` (resolved) and collects the links it lies behind."""

    roots: Sequence[Path]
    allow_outside: bool = False
    links: dict[Path, Path] = field(default_factory=dict)  # link (lexical path) -> resolved target
    _is_link: dict[Path, bool] = field(default_factory=dict, repr=False)

    def admit(self, path: Path) -> None:
        """Record the links ``path`` (absolute, lexical, under one of the roots) lies behind; SourceError when
        it resolves outside every root and that was not allowed."""
        base = next((r for r in self.roots if path.is_relative_to(r)), None)
        if base is None:  # the importers only produce paths under a root; never index one that is not
            raise SourceError(f"{path}: outside the folders named ({self._named()})")
        behind = [p for p in (*reversed(path.relative_to(base).parents[:-1]), path.relative_to(base))
                  if self._link(base / p)]  # fmt: skip
        if not behind:
            return
        for rel in behind:
            self.links.setdefault(base / rel, Path(os.path.realpath(base / rel)))
        real = Path(os.path.realpath(path))
        if not self.allow_outside and not any(real.is_relative_to(r) for r in self.roots):
            link = base / behind[-1]
            raise SourceError(
                f"{path}: it lies behind the symbolic link {link} -> {self.links[link]}, outside the folders "
                f"named ({self._named()}): refused; pass {ALLOW_FLAG} to index it anyway"
            )

    def _link(self, path: Path) -> bool:
        if path not in self._is_link:
            self._is_link[path] = path.is_symlink()
        return self._is_link[path]

    def _named(self) -> str:
        return ", ".join(map(str, self.roots))

    def rows(self, images_root: Path) -> list[dict[str, str]]:
        """links.csv rows: each link relative to the images root (like every path of the index), its target."""
        return [{"path": os.path.relpath(link, images_root), "target": str(target)}
                for link, target in sorted(self.links.items())]  # fmt: skip
