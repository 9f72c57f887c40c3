"""Data layer: loading + validation, item index, BM25 history retrieval (tiny fixtures only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drpkit.data import (
    Item,
    Review,
    ReviewData,
    UserRow,
    comparable_items,
    history_query,
    load_reviews,
    retrieve_history,
)
from drpkit.data.loading import convert_rows
from drpkit.data.tasks import build_task


def review(asin: str, title: str = "A title", text: str = "Some review text.", rating: float = 4.0, ts: int = 1) -> dict:
    return {"asin": asin, "title": title, "text": text, "rating": rating, "timestamp": ts}


def user_row(user_id: str, profile_asins: list[str], target_asin: str, **target) -> dict:
    return {
        "user_id": user_id,
        "profile": [review(a, title=f"{user_id} on {a}", text=f"{user_id} thinks {a} is fine.", ts=i) for i, a in enumerate(profile_asins)],
        "data": {**review(target_asin, title=f"{user_id} target", text=f"{user_id} target text.", ts=99), **target},
    }


META = [
    {"asin": "A1", "title": "Item one", "description": "first item"},
    {"asin": "A2", "title": "Item two", "description": "second item"},
    {"asin": "A3", "title": "Item three", "description": "third item"},
    {"asin": "T1", "title": "Target one", "description": "a target"},
]


def write_jsonl(path: Path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "meta.jsonl", META)
    write_jsonl(
        tmp_path / "main_train.jsonl",
        [
            user_row("u1", ["A1", "A2"], "T1"),  # line 1 ok
            '{"user_id": "u2", "profile": [',  # line 2 malformed JSON
            {k: v for k, v in user_row("u3", ["A1"], "T1").items() if k != "data"},  # line 3 missing data
            user_row("u4", ["A1"], "T1", rating=7),  # line 4 rating out of range
            user_row("u5", ["A1"], "T1", text="   "),  # line 5 blank text
            user_row("u6", ["A2", "A3"], "A1"),  # line 6 ok
        ],
    )
    bad_type = user_row("u8", ["A1"], "T1")
    bad_type["profile"][0]["timestamp"] = "yesterday"
    write_jsonl(
        tmp_path / "main_val.jsonl",
        [
            user_row("u1", ["A1", "A2", "T1"], "A3"),  # line 1 ok (train target now in profile)
            user_row("u7", ["A1"], "ZZ"),  # line 2 target without meta
            bad_type,  # line 3 wrong type inside the profile
        ],
    )
    return tmp_path


def make_row(user_id: str, profile: list[str], target: str) -> UserRow:
    return UserRow.model_validate(user_row(user_id, profile, target))


def problems_at(data: ReviewData, split: str) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for p in data.problems:
        if p.split == split:
            out.setdefault(p.line, set()).add(p.field)
    return out


def test_jsonl_valid_rows_and_problems(folder: Path) -> None:
    data = load_reviews(folder)
    assert set(data.rows) == {"train", "val"}  # test split absent: the present ones load
    assert [r.user_id for r in data.rows["train"]] == ["u1", "u6"]
    assert [r.user_id for r in data.rows["val"]] == ["u1"]
    assert set(data.items) == {"A1", "A2", "A3", "T1"}
    assert problems_at(data, "train") == {
        2: {"<row>"},
        3: {"data"},
        4: {"data.rating"},
        5: {"data.text"},
    }
    assert problems_at(data, "val") == {2: {"data.asin"}, 3: {"profile.0.timestamp"}}
    assert data.skipped_rows == {"meta": 0, "train": 4, "val": 2}
    assert sum(data.skipped_rows.values()) == 6
    assert all(p.source.endswith(".jsonl") for p in data.problems)
    assert "malformed JSON" in next(p.message for p in data.problems if p.field == "<row>")
    summary = data.summary()
    assert "train: 2 rows (4 skipped)" in summary and "val: 1 rows (2 skipped)" in summary


def test_nothing_malformed_returned(folder: Path) -> None:
    data = load_reviews(folder)
    for rows in data.rows.values():
        for row in rows:
            assert row.data.asin in data.items
            for r in [*row.profile, row.data]:
                assert isinstance(r, Review) and r.text.strip() and 0 <= r.rating <= 5


def test_meta_problems_and_profile_without_meta(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "meta.jsonl",
        [META[3], {"asin": "T1", "title": "dup", "description": ""}, {"asin": "X"}, "[1, 2]", "not json"],
    )
    write_jsonl(tmp_path / "main_test.jsonl", [user_row("u1", ["NOMETA"], "T1")])
    data = load_reviews(tmp_path, splits=["test"])
    assert problems_at(data, "meta") == {2: {"asin"}, 3: {"title"}, 4: {"<row>"}, 5: {"<row>"}}
    assert data.skipped_rows["meta"] == 4
    # profile reviews whose item lacks meta are kept, with empty item text
    assert len(data.rows["test"]) == 1
    [(item, review)] = build_task(data.rows["test"][0], data, num_retrieved=8, num_compared=0, m=4).history
    assert review.asin == "NOMETA" and item.title == "" and item.description == ""
    assert "1 profile reviews without meta" in data.summary()


def test_missing_files_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="main_train.jsonl"):
        load_reviews(tmp_path)
    write_jsonl(tmp_path / "main_val.jsonl", [user_row("u1", ["A1"], "T1")])
    with pytest.raises(FileNotFoundError, match="meta.jsonl"):
        load_reviews(tmp_path)
    write_jsonl(tmp_path / "meta.jsonl", META)
    with pytest.raises(FileNotFoundError, match="main_test.jsonl"):
        load_reviews(tmp_path, splits=["test"])
    with pytest.raises(FileNotFoundError):
        load_reviews(tmp_path / "nope")


def test_convert_rows_on_dicts() -> None:
    items = {m["asin"]: Item(**m) for m in META}
    rows, problems, skipped = convert_rows("val", [(1, user_row("u1", ["A1"], "T1")), (2, "oops"), (3, {"user_id": ""})], items)
    assert [r.user_id for r in rows] == ["u1"]
    assert skipped == 2
    assert {(p.line, p.field) for p in problems} >= {(2, "<row>"), (3, "user_id"), (3, "profile"), (3, "data")}


def test_save_to_disk_layout(tmp_path: Path) -> None:
    from datasets import Dataset

    cat = "CDs_and_Vinyl"
    Dataset.from_list([user_row("u1", ["A1", "A2"], "T1"), user_row("u2", ["A1"], "A3")]).save_to_disk(
        str(tmp_path / "DPL-main" / cat / "val")
    )
    Dataset.from_list([user_row("u1", ["A1"], "T1", rating=9)]).save_to_disk(str(tmp_path / "DPL-main" / cat / "test"))
    Dataset.from_list(META).save_to_disk(str(tmp_path / "DPL-meta" / cat / "full"))

    data = load_reviews(tmp_path, splits=("train", "val", "test"), category=cat)
    assert set(data.rows) == {"val", "test"}
    assert [r.user_id for r in data.rows["val"]] == ["u1", "u2"]
    assert data.rows["test"] == []
    assert [(p.split, p.line, p.field) for p in data.problems] == [("test", 1, "data.rating")]
    assert data.rows["val"][0].profile[1] == Review(**user_row("u1", ["A1", "A2"], "T1")["profile"][1])

    with pytest.raises(ValueError, match="category"):
        load_reviews(tmp_path)
    with pytest.raises(FileNotFoundError, match="Books"):
        load_reviews(tmp_path, category="Books")


def test_item_reviews_index_excludes_targets(folder: Path) -> None:
    data = load_reviews(folder)
    # T1 is u1's train target; it appears in u1's val profile only -> indexed from the profile,
    # never from the train row's `data`.
    assert [uid for uid, _ in data.item_reviews("T1")] == ["u1"]
    assert data.item_reviews("T1", exclude_user="u1") == []
    # A3 is only ever a target (u1 val) or in u6's profile
    assert [uid for uid, _ in data.item_reviews("A3")] == ["u6"]
    # A1: u1 in train and val profiles -> deduplicated; sorted by user id
    assert [uid for uid, _ in data.item_reviews("A1")] == ["u1"]
    assert [uid for uid, _ in data.item_reviews("A2")] == ["u1", "u6"]
    assert data.item_reviews("nothing") == []


def test_item_reviews_never_targets() -> None:
    a = make_row("a", ["I1"], "I2")
    b = make_row("b", ["I2"], "I1")
    data = ReviewData(rows={"test": [a, b]}, items={})
    assert [uid for uid, _ in data.item_reviews("I1")] == ["a"]
    assert [uid for uid, _ in data.item_reviews("I2")] == ["b"]


def test_comparable_items() -> None:
    rows = [make_row("me", ["P1", "P2"], "T")]
    rows += [make_row(f"o{i}", ["P1"] + (["P2"] if i < 2 else []), "T") for i in range(4)]
    data = ReviewData(rows={"test": rows}, items={})
    me = rows[0]
    assert [r.asin for r in comparable_items(me.profile, data, "me", m=4)] == ["P1"]
    assert [r.asin for r in comparable_items(me.profile, data, "me", m=2)] == ["P1", "P2"]
    assert comparable_items(me.profile, data, "me", m=5) == []


# ------------------------------------------------------------------ BM25


def rev(asin: str, title: str) -> Review:
    return Review(asin=asin, title=title, text="x", rating=3, timestamp=0)


ITEMS = {
    "jazz": Item(asin="jazz", title="Blue", description="smooth jazz saxophone trio recording"),
    "metal": Item(asin="metal", title="Loud", description="heavy metal guitars and drums"),
    "folk": Item(asin="folk", title="Quiet", description="acoustic folk songs banjo"),
    "pop": Item(asin="pop", title="Hits", description="dance pop singles"),
    "opera": Item(asin="opera", title="Arias", description="soprano opera arias orchestra"),
}
PROFILE = [rev("metal", "Too loud"), rev("folk", "Gentle"), rev("jazz", "Great saxophone"), rev("pop", "Catchy"), rev("opera", "Grand")]


def test_history_query_matches_dpl() -> None:
    target = rev("t", "My title")
    assert history_query(target, Item(asin="t", title="T", description="desc words")) == "My title desc words"
    assert history_query(target, None) == "My title "


def test_bm25_ranks_relevant_first() -> None:
    query = history_query(rev("new", "Wonderful saxophone"), Item(asin="new", title="N", description="a jazz saxophone record"))
    top = retrieve_history(PROFILE, ITEMS, query, k=1)
    assert [r.asin for r in top] == ["jazz"]
    # the review title is indexed too
    assert retrieve_history(PROFILE, ITEMS, "Catchy", k=1)[0].asin == "pop"
    # the item title is not (DPL indexes review title + item description)
    assert [r.asin for r in retrieve_history(PROFILE, ITEMS, "Hits", k=5)] == [r.asin for r in PROFILE]


def test_bm25_k_bounds_and_ties() -> None:
    assert len(retrieve_history(PROFILE, ITEMS, "jazz", k=3)) == 3
    everything = retrieve_history(PROFILE, ITEMS, "jazz", k=50)
    assert len(everything) == len(PROFILE) and everything[0].asin == "jazz"
    assert sorted(r.asin for r in everything) == sorted(r.asin for r in PROFILE)
    # no matching token: every score ties -> profile order, stable
    assert retrieve_history(PROFILE, ITEMS, "zzz", k=5) == PROFILE
    assert retrieve_history(PROFILE, ITEMS, "", k=2) == PROFILE[:2]
    assert retrieve_history(PROFILE, ITEMS, "jazz", k=0) == []
    assert retrieve_history([], ITEMS, "jazz", k=8) == []
    with pytest.raises(ValueError):
        retrieve_history(PROFILE, ITEMS, "jazz", k=-1)
    # items without meta: no description, still retrievable by review title
    assert retrieve_history([rev("x", "alpha"), rev("y", "beta"), rev("z", "gamma")], {}, "beta", k=1)[0].asin == "y"


def test_hub_source_names_and_category_required() -> None:
    from drpkit.data.loading import HUB_MAIN, HUB_META, _hub_names

    assert _hub_names("hub") == (HUB_MAIN, HUB_META)
    assert _hub_names("SnowCharmQ/DPL-main") == ("SnowCharmQ/DPL-main", "SnowCharmQ/DPL-meta")
    assert _hub_names("some/folder") is None
    with pytest.raises(ValueError, match="category"):
        load_reviews("hub")  # checked before anything is downloaded


def test_a_users_earlier_reviews_precede_all_their_targets_of_the_split(train_data):
    first, second = train_data.rows["train"][:2]
    assert first.data in second.profile  # the later row's profile holds the earlier target
    earlier = train_data.earlier_reviews("train", "u0")
    assert [r.asin for r in earlier] == ["i0", "i1"] and first.data not in earlier and second.data not in earlier
    task = build_task(second, train_data, num_retrieved=3, num_compared=2, m=4, split="train", neighbours=2)
    assert [review for _, review in task.user_history] == list(earlier)
    assert [c.item.asin for c in task.user_comparisons] == ["i1", "i0"]  # the latest first
    assert [c.item.asin for c in task.comparisons] != [] and first.data in [r for _, r in task.history]
    assert [n.user_id for n in task.neighbours] == ["u1", "u2"]  # all share both items: ties by user id
    assert all(first.data.text not in r.text for n in task.neighbours for _, r in n.reviews)
    assert build_task(second, train_data, 3, 2, 4).user_history == ()  # without the split: none


def test_similar_users_share_the_most_earlier_items(tiny_data):
    from drpkit.data.schema import UserRow

    rows = tiny_data.rows["test"]
    narrow = UserRow(user_id="u9", profile=rows[0].profile[:1], data=rows[0].data)
    data = type(tiny_data)(rows={"test": [*rows, narrow]}, items=tiny_data.items)
    assert data.similar_users("test", "u9", 2) == ["u0", "u1"]
    assert data.similar_users("test", "u0", 10)[-1] == "u9"  # one item in common: last
    assert data.similar_users("test", "nobody", 2) == []
