import dspy
import pytest

from drpkit.data.loading import ReviewData
from drpkit.data.schema import Item, Review, UserRow

N_USERS, N_ITEMS = 6, 4
STYLES = [
    "short and blunt {a}. fine.",
    "I absolutely LOVED {a}!!! Amazing, wonderful, a joy from start to finish!!!",
    "The production of {a} is clean: wide stereo image, tight low end, restrained compression.",
    "This reminds me of summers long ago when I first heard {a} with my brother in the car.",
    "Cons: {a} is too long. Cons: the mix is muddy. Cons: overpriced. Two stars at most.",
    "Track 1 (7/10). Track 2 (8/10). Overall {a} averages about 7.5 out of ten.",
]


@pytest.fixture(autouse=True)
def isolated_dspy():
    """No disk or memory cache, no LM or adapter left over from another test (or from a CLI call)."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    dspy.configure(lm=None, adapter=None)  # global, as worker threads read it: `drp run` sets it for real
    yield


@pytest.fixture
def tiny_data() -> ReviewData:
    """Six users who each reviewed the same four albums in a style of their own; album 3 is the target."""
    items = {f"i{j}": Item(asin=f"i{j}", title=f"Album {j}", description=f"A rock album number {j}.")
             for j in range(N_ITEMS)}
    rows = []
    for u in range(N_USERS):
        reviews = [
            Review(asin=f"i{j}", title=f"On album {j}", text=STYLES[u].format(a=f"album {j}"),
                   rating=float(1 + (u + j) % 5), timestamp=1_400_000_000_000 + j)
            for j in range(N_ITEMS)
        ]
        rows.append(UserRow(user_id=f"u{u}", profile=reviews[:-1], data=reviews[-1]))
    return ReviewData(rows={"test": rows}, items=items)


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", help="also run tests that start a real vLLM server")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live test: run with --live (starts a real vLLM server)")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def train_data(tiny_data) -> ReviewData:
    """tiny_data as the DPL train split holds it: each user's two latest reviews are targets, and the later row's
    profile holds the earlier target."""
    rows = []
    for row in tiny_data.rows["test"]:
        reviews = [*row.profile, row.data]
        rows += [UserRow(user_id=row.user_id, profile=reviews[:-2], data=reviews[-2]),
                 UserRow(user_id=row.user_id, profile=reviews[:-1], data=reviews[-1])]
    return ReviewData(rows={"train": rows}, items=tiny_data.items)


@pytest.fixture
def vllm_stand_in(tmp_path):
    """`fake_server.py` in a thread of the test: the base URL of an OpenAI-compatible server with vLLM's /tokenize."""
    import threading

    from fake_server import FakeServer

    server = FakeServer(tmp_path / "requests.jsonl")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
