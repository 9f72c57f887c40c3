"""Loading and validating DPL/DRP review data.

Three sources, one row-conversion path (:func:`convert_rows`, :func:`convert_meta`):

(a) a folder of JSON Lines files ``main_<split>.jsonl`` plus ``meta.jsonl``
    (the layout of ``data/sample`` and ``../shared/data/digital_music_2014``);
(b) folders written by ``datasets``' ``save_to_disk`` in the DPL layout
    ``<root>/DPL-main/<category>/<split>`` and ``<root>/DPL-meta/<category>/full``
    (``DRP-main``/``DRP-meta`` are accepted as well; a ``DatasetDict`` saved at
    ``<root>/DPL-main/<category>`` has exactly this shape);
(c) the hub datasets ``SnowCharmQ/DPL-main`` / ``SnowCharmQ/DPL-meta``, read the way the DPL
    code reads them: ``load_dataset("SnowCharmQ/DPL-main", category, split=split)`` and
    ``load_dataset("SnowCharmQ/DPL-meta", category, split="full")``.

Validation rules (nothing malformed reaches a prompt):

* every main row is validated with :class:`~drpkit.data.schema.UserRow`; a row with any error
  (malformed JSON, not an object, missing field, wrong type, blank text, rating outside
  0..5, ...) is skipped as a whole and each error is recorded as a :class:`RowProblem`
  naming the split, the 1-based line (JSONL) or row number (datasets) and the field
  (dotted pydantic location, e.g. ``profile.3.rating``; ``<row>`` for the whole row);
* every meta row is validated with :class:`~drpkit.data.schema.Item` (split ``"meta"``);
  a repeated asin keeps the first row and records a problem;
* a main row whose *target* item (``data.asin``) has no meta is skipped with a problem on
  field ``data.asin`` (the prompt needs the item's title and description);
* profile reviews whose item has no meta are kept and no problem is recorded: their item
  title and description are treated as ``""``; the count is
  reported by :meth:`ReviewData.summary`.

JSON Lines are read with the standard ``json`` module rather than
``datasets.load_dataset("json")``: Arrow unifies struct types across rows (a missing field
becomes ``None``, a type clash fails the whole file), an empty file is an error, and line
numbers are lost; plain ``json`` keeps every bad row attributable to its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from .schema import Item, Review, UserRow

__all__ = [
    "DEFAULT_SPLITS",
    "HUB_CATEGORIES",
    "HUB_MAIN",
    "HUB_META",
    "ReviewData",
    "RowProblem",
    "convert_meta",
    "convert_rows",
    "load_reviews",
]

DEFAULT_SPLITS: tuple[str, ...] = ("train", "val", "test")
HUB_MAIN = "SnowCharmQ/DPL-main"
HUB_META = "SnowCharmQ/DPL-meta"
HUB_CATEGORIES: tuple[str, ...] = ("Books", "CDs_and_Vinyl", "Movies_and_TV")
META_SPLIT = "meta"
ROW_FIELD = "<row>"
_DISK_PREFIXES = ("DPL", "DRP")


@dataclass(frozen=True)
class RowProblem:
    """Why one row (or one field of it) was rejected.

    ``line`` is the 1-based line of a JSON Lines file, or the 1-based row number of a
    ``datasets`` split. ``split`` is the main split name, or ``"meta"`` for item rows.
    """

    split: str
    line: int
    field: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:" if self.source else f"{self.split}:"
        return f"{where}{self.line}: {self.field}: {self.message}"


@dataclass
class ReviewData:
    """Validated rows per split, items by asin, and the problems met while loading."""

    rows: dict[str, list[UserRow]]
    items: dict[str, Item]
    problems: list[RowProblem] = field(default_factory=list)
    skipped_rows: dict[str, int] = field(default_factory=dict)
    _index: dict[str, list[tuple[str, Review]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _earlier: dict[str, dict[str, tuple[Review, ...]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _build_index(self) -> dict[str, list[tuple[str, Review]]]:
        index: dict[str, dict[str, Review]] = {}
        for rows in self.rows.values():
            for row in rows:
                for review in row.profile:
                    # (user_id, asin) deduplicated: the same review recurs in a user's
                    # rows of every split; the first one seen is kept.
                    index.setdefault(review.asin, {}).setdefault(row.user_id, review)
        # Reviewers sorted by user id, as DPL sorts `asin_reviewers_map[asin]`.
        return {asin: sorted(by_user.items()) for asin, by_user in index.items()}

    def item_reviews(self, asin: str, exclude_user: str | None = None) -> list[tuple[str, Review]]:
        """All loaded users' reviews of ``asin`` as ``(user_id, review)``, sorted by user id.

        Built from the users' *profiles* only (targets, ``row.data``, are never indexed, so a
        reference review cannot leak). One review per user. Note that with several splits
        loaded a user's later rows hold their earlier targets in the profile: pass
        ``exclude_user`` (the current user) whenever the result is shown next to that user.
        """
        if self._index is None:
            self._index = self._build_index()
        reviews = self._index.get(asin, [])
        if exclude_user is not None:
            reviews = [(uid, r) for uid, r in reviews if uid != exclude_user]
        return list(reviews)

    def reviewer_count(self, asin: str, exclude_user: str | None = None) -> int:
        return len(self.item_reviews(asin, exclude_user=exclude_user))

    def earlier_reviews(self, split: str, user_id: str) -> tuple[Review, ...]:
        """The user's reviews before every target of theirs in ``split``, oldest first: those all their rows'
        profiles share, none of them a target. What a summary made once per user may read for all their
        targets: a later row's profile holds the user's earlier target (the DPL train split has two a user)."""
        if split not in self._earlier:
            rows_of: dict[str, list[UserRow]] = {}
            for row in self.rows.get(split, []):
                rows_of.setdefault(row.user_id, []).append(row)
            self._earlier[split] = {user: _shared_profile(rows) for user, rows in rows_of.items()}
        return self._earlier[split].get(user_id, ())

    def similar_users(self, split: str, user_id: str, k: int) -> list[str]:
        """The ``k`` other users of ``split`` whose earlier reviews share the most items with the user's (at
        least one; ties by user id). From the items reviewed before the targets only, never a target."""
        self.earlier_reviews(split, user_id)
        users_of: dict[str, set[str]] = {}
        for other, reviews in self._earlier[split].items():
            for review in reviews:
                users_of.setdefault(review.asin, set()).add(other)
        shared: dict[str, int] = {}
        for asin in {review.asin for review in self._earlier[split].get(user_id, ())}:
            for other in users_of[asin] - {user_id}:
                shared[other] = shared.get(other, 0) + 1
        return sorted(shared, key=lambda other: (-shared[other], other))[:k]

    def profile_reviews_without_meta(self) -> int:
        return sum(
            1
            for rows in self.rows.values()
            for row in rows
            for review in row.profile
            if review.asin not in self.items
        )

    def summary(self) -> str:
        parts = [
            f"{split}: {len(rows)} rows ({self.skipped_rows.get(split, 0)} skipped)"
            for split, rows in self.rows.items()
        ]
        parts.append(f"meta: {len(self.items)} items ({self.skipped_rows.get(META_SPLIT, 0)} skipped)")
        missing = self.profile_reviews_without_meta()
        if missing:
            parts.append(f"{missing} profile reviews without meta (kept, empty item text)")
        parts.append(f"{len(self.problems)} problems")
        return "; ".join(parts)


def _shared_profile(rows: list[UserRow]) -> tuple[Review, ...]:
    """The profile reviews every one of a user's rows holds, minus their targets, in the first row's order."""
    targets = {(row.data.asin, row.data.timestamp) for row in rows}
    shared = set.intersection(*({(r.asin, r.timestamp) for r in row.profile} for row in rows)) - targets
    return tuple(review for review in rows[0].profile if (review.asin, review.timestamp) in shared)


# --------------------------------------------------------------------------- conversion


class _Unreadable:
    """Stand-in for a row that could not be parsed at all."""

    def __init__(self, message: str) -> None:
        self.message = message


def _loc(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    return loc or ROW_FIELD


def _problems_from(exc: ValidationError, split: str, line: int, source: str) -> list[RowProblem]:
    return [
        RowProblem(split=split, line=line, field=_loc(err), message=err.get("msg", str(err)), source=source)
        for err in exc.errors(include_url=False)
    ]


M = TypeVar("M", Item, UserRow)


def _validated(
    records: Iterable[tuple[int, Any]], model: type[M], split: str, source: str, problems: list[RowProblem]
) -> Iterator[tuple[int, M]]:
    """The records that parse as `model`; each one that does not is recorded in `problems`."""
    for line, raw in records:
        if isinstance(raw, _Unreadable):
            problems.append(RowProblem(split, line, ROW_FIELD, raw.message, source))
        elif not isinstance(raw, dict):
            problems.append(RowProblem(split, line, ROW_FIELD, f"expected an object, got {type(raw).__name__}", source))
        else:
            try:
                yield line, model.model_validate(raw)
            except ValidationError as exc:
                problems.extend(_problems_from(exc, split, line, source))


def _rejected_rows(problems: list[RowProblem]) -> int:
    """Rows skipped: a rejected row has one problem per error, all on its line."""
    return len({problem.line for problem in problems})


def convert_meta(
    records: Iterable[tuple[int, Any]], source: str = ""
) -> tuple[dict[str, Item], list[RowProblem], int]:
    """Validate meta rows ``(line, raw)`` -> (items by asin, problems, rows skipped)."""
    items: dict[str, Item] = {}
    problems: list[RowProblem] = []
    for line, item in _validated(records, Item, META_SPLIT, source, problems):
        if item.asin in items:
            problems.append(RowProblem(META_SPLIT, line, "asin", f"duplicate asin {item.asin!r}; first row kept", source))
            continue
        items[item.asin] = item
    return items, problems, _rejected_rows(problems)


def convert_rows(
    split: str,
    records: Iterable[tuple[int, Any]],
    items: dict[str, Item],
    source: str = "",
) -> tuple[list[UserRow], list[RowProblem], int]:
    """Validate main rows ``(line, raw)`` of one split -> (rows, problems, rows skipped).

    ``raw`` is a dict (a parsed JSON line or a ``datasets`` row). Rows whose target item is
    missing from ``items`` are skipped with a problem on ``data.asin``.
    """
    rows: list[UserRow] = []
    problems: list[RowProblem] = []
    for line, row in _validated(records, UserRow, split, source, problems):
        if row.data.asin not in items:
            problems.append(
                RowProblem(split, line, "data.asin", f"target item {row.data.asin!r} has no meta row", source)
            )
            continue
        rows.append(row)
    return rows, problems, _rejected_rows(problems)


# --------------------------------------------------------------------------- readers


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("r", encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue  # blank lines carry no row
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, _Unreadable(f"malformed JSON: {exc.msg} (column {exc.colno})")


def _read_dataset(dataset: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    for number, row in enumerate(dataset, start=1):
        yield number, row


def _assemble(
    splits: dict[str, tuple[Iterable[tuple[int, Any]], str]],
    meta: tuple[Iterable[tuple[int, Any]], str],
) -> ReviewData:
    items, problems, meta_skipped = convert_meta(meta[0], source=meta[1])
    rows: dict[str, list[UserRow]] = {}
    skipped: dict[str, int] = {META_SPLIT: meta_skipped}
    for split, (records, source) in splits.items():
        split_rows, split_problems, split_skipped = convert_rows(split, records, items, source=source)
        rows[split] = split_rows
        problems.extend(split_problems)
        skipped[split] = split_skipped
    return ReviewData(rows=rows, items=items, problems=problems, skipped_rows=skipped)


def _load_jsonl_folder(folder: Path, splits: tuple[str, ...]) -> ReviewData:
    expected = [folder / f"main_{split}.jsonl" for split in splits]
    present = {split: path for split, path in zip(splits, expected) if path.is_file()}
    meta_path = folder / "meta.jsonl"
    if not present:
        names = ", ".join(p.name for p in expected)
        raise FileNotFoundError(f"none of the requested splits found in {folder}: expected {names}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: the item metadata (meta.jsonl) is required")
    return _assemble(
        {split: (_read_jsonl(path), str(path)) for split, path in present.items()},
        (_read_jsonl(meta_path), str(meta_path)),
    )


def _disk_dirs(root: Path) -> tuple[Path, Path] | None:
    for prefix in _DISK_PREFIXES:
        main, meta = root / f"{prefix}-main", root / f"{prefix}-meta"
        if main.is_dir() or meta.is_dir():
            return main, meta
    return None


def _load_disk(root: Path, main_dir: Path, meta_dir: Path, splits: tuple[str, ...], category: str | None) -> ReviewData:
    if not category:
        raise ValueError(f"{root} holds {main_dir.name}/{meta_dir.name} folders: pass category= (e.g. one of {', '.join(HUB_CATEGORIES)})")
    from datasets import load_from_disk

    cat_main, meta_path = main_dir / category, meta_dir / category / "full"
    expected = [cat_main / split for split in splits]
    present = {split: path for split, path in zip(splits, expected) if path.is_dir()}
    if not present:
        raise FileNotFoundError(
            f"none of the requested splits found: expected {', '.join(str(p) for p in expected)}"
        )
    if not meta_path.is_dir():
        raise FileNotFoundError(f"{meta_path} is missing: the item metadata (save_to_disk folder) is required")
    return _assemble(
        {split: (_read_dataset(load_from_disk(str(path))), str(path)) for split, path in present.items()},
        (_read_dataset(load_from_disk(str(meta_path))), str(meta_path)),
    )


def _load_hub(main_name: str, meta_name: str, splits: tuple[str, ...], category: str | None) -> ReviewData:
    if not category:
        raise ValueError(f"the hub datasets need category= (one of {', '.join(HUB_CATEGORIES)})")
    from datasets import load_dataset

    # As DPL's model-infer.py / diff-build.py read them.
    main = {split: load_dataset(main_name, category, split=split) for split in splits}
    meta = load_dataset(meta_name, category, split="full")
    return _assemble(
        {split: (_read_dataset(ds), f"{main_name}/{category}/{split}") for split, ds in main.items()},
        (_read_dataset(meta), f"{meta_name}/{category}/full"),
    )


def _hub_names(source: str) -> tuple[str, str] | None:
    if source == "hub":
        return HUB_MAIN, HUB_META
    if source.count("/") == 1 and not Path(source).exists():
        if source.endswith("-main"):
            return source, source[: -len("-main")] + "-meta"
        if source.endswith("-meta"):
            return source[: -len("-meta")] + "-main", source
    return None


def load_reviews(
    source: str | Path,
    splits: Iterable[str] = DEFAULT_SPLITS,
    category: str | None = None,
) -> ReviewData:
    """Load and validate DPL-schema data from a JSONL folder, a save_to_disk root or the hub.

    * a folder with ``main_<split>.jsonl`` + ``meta.jsonl``: the requested splits that exist
      are loaded (``category`` is ignored); none present -> ``FileNotFoundError`` naming the
      expected files; ``meta.jsonl`` is required;
    * a folder with ``DPL-main``/``DPL-meta`` (or ``DRP-*``) subfolders: needs ``category``;
      loads ``<root>/DPL-main/<category>/<split>`` and ``<root>/DPL-meta/<category>/full``;
    * ``"hub"`` or a hub name ``owner/name-main`` (``-meta`` is derived): needs ``category``,
      downloads with ``datasets.load_dataset``.
    """
    splits = tuple(splits)
    if not splits:
        raise ValueError("no splits requested")
    if isinstance(source, str):
        hub = _hub_names(source)
        if hub is not None:
            return _load_hub(hub[0], hub[1], splits, category)
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"data source {root} does not exist (nor is it 'hub' or an owner/name-main hub dataset)")
    if not root.is_dir():
        raise NotADirectoryError(f"data source {root} must be a folder")
    if any((root / f"main_{split}.jsonl").is_file() for split in splits) or (root / "meta.jsonl").is_file():
        return _load_jsonl_folder(root, splits)
    disk = _disk_dirs(root)
    if disk is not None:
        return _load_disk(root, disk[0], disk[1], splits, category)
    names = ", ".join(f"main_{s}.jsonl" for s in splits)
    raise FileNotFoundError(
        f"{root} is not a DPL data folder: expected {names} + meta.jsonl, "
        f"or DPL-main/<category>/<split> + DPL-meta/<category>/full"
    )
