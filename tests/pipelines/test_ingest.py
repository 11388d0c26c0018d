"""Ingest: every MovieLens layout and the generic format read into the RawCatalog contract."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InputError
from app.events import EVENT_TYPES
from pipelines.ingest import load_source
from pipelines.ingest.movielens import fix_title
from pipelines.ingest.raw import EVENT_COLUMNS, ITEM_COLUMNS, RawCatalog
from pipelines.ingest.series import detect_series, fill_positions

ML_LATEST_SMALL = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-latest-small"
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def check_contract(catalog: RawCatalog) -> None:
    items, events = catalog.items, catalog.events
    assert list(items.columns) == ITEM_COLUMNS
    assert list(events.columns) == EVENT_COLUMNS
    assert items["item_id"].is_unique
    assert items["released"].dtype == "datetime64[s]"
    assert items["series_position"].dtype == np.float64
    assert all(isinstance(g, list) for g in items["genres"])
    assert all(isinstance(t, str) for t in items["title"])
    assert all(s is None or isinstance(s, str) for s in items["series"])
    assert events["timestamp"].dtype == np.int64
    assert events["value"].dtype == np.float64
    assert set(events["event"]) <= set(EVENT_TYPES)
    assert events["item_id"].isin(items["item_id"]).all()
    assert all(d is None or isinstance(d, str) for d in events["device"])
    if catalog.content_vectors is not None:
        assert catalog.content_vectors.dtype == np.float32
        assert len(catalog.content_vectors) == len(items)


def year(y: int) -> np.datetime64:
    return np.datetime64(f"{y}-01-01", "s")


# --- MovieLens ---------------------------------------------------------------------------------


@pytest.fixture
def ml_csv(tmp_path: Path) -> Path:
    write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children\n"
        '2,"Matrix, The (1999)",Action|Sci-Fi\n'
        "3,Toy Story 2 (1999),Adventure|Animation\n"
        "4,Toy Story 3 (2010),Animation|Children\n"
        '5,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Drama|Fantasy\n'
        "6,Babylon 5,(no genres listed)\n"
        "7,Hamlet (1948),Drama\n"
        "8,Hamlet (1990),Drama\n",
    )
    write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n"
        "1,2,5.0,964981247\n"
        "2,3,3.5,964982224\n"
        "2,99,1.0,964982300\n",
    )
    write(
        tmp_path / "tags.csv",
        "userId,movieId,tag,timestamp\n"
        "1,1,Pixar,1\n2,1,pixar,2\n3,1,fun,3\n1,2,cyberpunk,4\n1,99,orphan,5\n",
    )
    return tmp_path


def test_movielens_csv_layout(ml_csv: Path) -> None:
    catalog = load_source(ml_csv, "movielens")
    check_contract(catalog)
    items = catalog.items.set_index("item_id")
    assert list(items.index) == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert items.loc["2", "title"] == "The Matrix (1999)"
    assert (
        items.loc["5", "title"] == "The City of Lost Children (La Cité des enfants perdus) (1995)"
    )
    assert items.loc["1", "genres"] == ["Adventure", "Animation", "Children"]
    assert items.loc["6", "genres"] == []
    assert items.loc["2", "released"] == year(1999)
    assert items["released"].isna().loc["6"]
    assert items.loc["1", "description"] == ""
    assert items.loc["1", "tags"] == "pixar, fun"
    assert items.loc["2", "tags"] == "cyberpunk"
    assert items.loc["3", "tags"] == ""
    assert items.loc["4", "series"] == "toy story" and items.loc["4", "series_position"] == 3
    assert items.loc["7", "series"] is None and items.loc["8", "series"] is None

    events = catalog.events
    assert catalog.unknown_item_events == 1  # the rating of movie 99; tag rows are no events
    assert len(events) == 3
    assert events["user_id"].tolist() == ["1", "1", "2"]
    assert events["item_id"].tolist() == ["1", "2", "3"]
    assert events["value"].tolist() == [4.0, 5.0, 3.5]
    assert events["timestamp"].tolist() == [964982703, 964981247, 964982224]
    assert set(events["event"]) == {"rating"}
    assert events["device"].tolist() == [None, None, None]
    assert catalog.content_vectors is None and catalog.format == "movielens"


def test_movielens_100k_layout(tmp_path: Path) -> None:
    flags = ["0"] * 19
    comedy = flags.copy()
    comedy[5] = "1"
    comedy[3] = "1"
    unknown = flags.copy()
    unknown[0] = "1"
    write(
        tmp_path / "u.item",
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(comedy) + "\n"
        "2|Cité des enfants perdus, La (1995)|15-Dec-1995||http://x|" + "|".join(flags) + "\n"
        "267|unknown||||" + "|".join(unknown) + "\n",
        encoding="latin-1",
    )
    write(
        tmp_path / "u.data", "196\t1\t3\t881250949\n186\t2\t5\t891717742\n22\t1682\t1\t878887116\n"
    )
    catalog = load_source(tmp_path, "movielens")
    check_contract(catalog)
    items = catalog.items.set_index("item_id")
    assert items.loc["1", "genres"] == ["Animation", "Comedy"]
    assert items.loc["2", "title"] == "La Cité des enfants perdus (1995)"
    assert items.loc["2", "released"] == np.datetime64("1995-12-15", "s")
    assert items.loc["267", "genres"] == [] and items["released"].isna().loc["267"]
    assert catalog.events["user_id"].tolist() == ["196", "186"]
    assert catalog.events["value"].tolist() == [3.0, 5.0]
    assert catalog.unknown_item_events == 1


def test_movielens_100k_genre_names_from_u_genre(tmp_path: Path) -> None:
    write(tmp_path / "u.genre", "Other|0\nFunny|1\n\n")
    write(tmp_path / "u.item", "1|Film (2000)|01-Jan-2000||url|0|1\n")
    write(tmp_path / "u.data", "1\t1\t4\t1\n")
    items = load_source(tmp_path, "movielens").items
    assert items["genres"].tolist() == [["Funny"]]


def test_movielens_1m_layout(tmp_path: Path) -> None:
    write(
        tmp_path / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Homme qui aimait les femmes, L' (1977)::Comedy\n"
        "3::Godfather: Part II, The (1974)::Action|Crime|Drama\n",
        encoding="latin-1",
    )
    write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::3::3::978302109\n2::7::4::978301968\n")
    catalog = load_source(tmp_path, "movielens")
    check_contract(catalog)
    items = catalog.items.set_index("item_id")
    assert items.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc["2", "title"] == "L'Homme qui aimait les femmes (1977)"
    assert items.loc["3", "title"] == "The Godfather: Part II (1974)"
    assert items.loc["3", "released"] == year(1974)
    assert catalog.events["item_id"].tolist() == ["1", "3"]
    assert catalog.events["timestamp"].tolist() == [978300760, 978302109]
    assert catalog.unknown_item_events == 1


def test_ml_latest_small_loads() -> None:
    if not ML_LATEST_SMALL.is_dir():
        pytest.skip(f"{ML_LATEST_SMALL} is not there")
    started = time.perf_counter()
    catalog = load_source(ML_LATEST_SMALL, "movielens")
    print(f"ml-latest-small loaded in {time.perf_counter() - started:.2f} s")
    check_contract(catalog)
    assert len(catalog.events) == 100836
    # this copy carries extra ratings of movies that are not in movies.csv: counted, not kept
    data_rows = len((ML_LATEST_SMALL / "ratings.csv").read_text().splitlines()) - 1
    assert catalog.unknown_item_events == data_rows - 100836
    assert len(catalog.items) == 9742
    items = catalog.items.set_index("item_id")
    assert (items["tags"] != "").sum() > 1000
    assert items.loc["2571", "title"] == "The Matrix (1999)"
    toy_story = items.loc[["1", "3114", "78499"]]
    assert toy_story["series"].tolist() == ["toy story"] * 3
    assert toy_story["series_position"].tolist() == [1.0, 2.0, 3.0]
    hamlets = items[items["title"].str.match(r"^Hamlet \(\d{4}\)$")]
    assert len(hamlets) >= 2 and hamlets["series"].isna().all()


def test_movielens_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a MovieLens directory"):
        load_source(tmp_path, "movielens")
    write(tmp_path / "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n1,1,good,11\n")
    with pytest.raises(InputError) as error:
        load_source(tmp_path, "movielens")
    assert (error.value.file, error.value.row, error.value.column) == ("ratings.csv", 2, "rating")


@pytest.mark.parametrize(
    ("files", "file", "row", "column"),
    [
        (
            {"movies.dat": "1::A (2000)::Drama\n", "ratings.dat": "1::1::5::1\n1::1::5\n"},
            "ratings.dat",
            2,
            None,
        ),
        (
            {"movies.dat": "1::A (2000)::Drama\n2::B (2001)\n", "ratings.dat": "1::1::5::1\n"},
            "movies.dat",
            2,
            None,
        ),
        ({"u.item": "1|A (2000)|||\n", "u.data": "1\t1\t5\t1\n"}, "u.item", 1, None),
        (
            {"u.item": "1|A|||u|" + "|".join("0" * 19) + "\n", "u.data": "1\t1\t5\tx\n"},
            "u.data",
            1,
            "timestamp",
        ),
        (
            {
                "movies.csv": "movieId,title,genres\n1,A,Drama\n1,B,Drama\n",
                "ratings.csv": "userId,movieId,rating,timestamp\n",
            },
            "movies.csv",
            2,
            "movieId",
        ),
    ],
)
def test_movielens_malformed_rows(
    tmp_path: Path, files: dict[str, str], file: str, row: int, column: str | None
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(InputError) as error:
        load_source(tmp_path, "movielens")
    assert (error.value.file, error.value.row, error.value.column) == (file, row, column)


def test_fix_title() -> None:
    assert fix_title("Matrix, The (1999)") == "The Matrix (1999)"
    assert fix_title("Bug's Life, A (1998)") == "A Bug's Life (1998)"
    assert fix_title("Crow, The: Wicked Prayer (2005)") == "The Crow: Wicked Prayer (2005)"
    assert fix_title("Homme, L' (2000)") == "L'Homme (2000)"
    assert fix_title("Lock, Stock & Two Smoking Barrels (1998)") == (
        "Lock, Stock & Two Smoking Barrels (1998)"
    )


# --- series ------------------------------------------------------------------------------------


def series_of(titles: list[str], years: list[int], genres: list[list[str]] | None = None):
    released = np.array([year(y) for y in years], dtype="datetime64[s]")
    series, positions = detect_series(titles, released, genres)
    return dict(zip(titles, zip(series, positions.tolist(), strict=True), strict=True))


def test_series_numbered_sequels_in_release_order() -> None:
    found = series_of(
        ["Toy Story 3 (2010)", "Toy Story (1995)", "Toy Story 2 (1999)", "Jumanji (1995)"],
        [2010, 1995, 1999, 1995],
    )
    assert found["Toy Story (1995)"] == ("toy story", 1.0)
    assert found["Toy Story 2 (1999)"] == ("toy story", 2.0)
    assert found["Toy Story 3 (2010)"] == ("toy story", 3.0)
    assert found["Jumanji (1995)"][0] is None


def test_series_leaves_remakes_apart() -> None:
    found = series_of(["Hamlet (1948)", "Hamlet (1990)", "Hamlet (1996)"], [1948, 1990, 1996])
    assert all(s is None for s, _ in found.values())
    # a numbered title of another genre is no sequel of the dramas
    found = series_of(
        ["Hamlet (1948)", "Hamlet (1990)", "Hamlet 2 (2008)"],
        [1948, 1990, 2008],
        [["Drama"], ["Drama"], ["Comedy"]],
    )
    assert all(s is None for s, _ in found.values())


def test_series_from_subtitles_and_episodes() -> None:
    found = series_of(
        [
            "Star Wars: Episode IV - A New Hope (1977)",
            "Star Wars: Episode V - The Empire Strikes Back (1980)",
            "Star Wars: Episode I - The Phantom Menace (1999)",
            "Star Wars: The Clone Wars (2008)",
            "The Godfather (1972)",
            "The Godfather: Part II (1974)",
            "Alien (1979)",
            "Alien: Resurrection (1997)",
            "Ali: Fear Eats the Soul (1974)",
            "Ali (2001)",
            "Apollo 13 (1995)",
            "Apollo 18 (2011)",
            "Kill Bill: Vol. 1 (2003)",
            "Kill Bill: Vol. 2 (2004)",
        ],
        [1977, 1980, 1999, 2008, 1972, 1974, 1979, 1997, 1974, 2001, 1995, 2011, 2003, 2004],
    )
    assert found["Star Wars: Episode IV - A New Hope (1977)"] == ("star wars", 1.0)
    assert found["Star Wars: Episode V - The Empire Strikes Back (1980)"] == ("star wars", 2.0)
    assert found["Star Wars: Episode I - The Phantom Menace (1999)"] == ("star wars", 3.0)
    assert found["Star Wars: The Clone Wars (2008)"] == ("star wars", 4.0)
    assert found["The Godfather: Part II (1974)"] == ("godfather", 2.0)
    assert found["Alien: Resurrection (1997)"] == ("alien", 2.0)
    assert found["Kill Bill: Vol. 1 (2003)"] == ("kill bill", 1.0)
    for title in ["Ali (2001)", "Ali: Fear Eats the Soul (1974)", "Apollo 13 (1995)"]:
        assert found[title][0] is None


def test_fill_positions_keeps_given_and_numbers_the_rest_by_release() -> None:
    released = np.array([year(2005), year(2001), "NaT", year(2003)], dtype="datetime64[s]")
    positions = fill_positions(
        ["a", "a", "a", None], np.array([np.nan, 1.0, np.nan, 4.0]), released, ["x", "y", "z", "w"]
    )
    assert positions[:3].tolist() == [2.0, 1.0, 3.0] and np.isnan(positions[3])


# --- generic -----------------------------------------------------------------------------------


def generic_dir(tmp_path: Path, items: str, events: str) -> Path:
    write(tmp_path / "items.csv", items)
    write(tmp_path / "events.csv", events)
    return tmp_path


ITEMS_CSV = (
    "item_id,title,genres,series,released,extra\n"
    "a,Alpha,Drama|Crime,saga,2021-03-04,x\n"
    "b,,,saga,2019,y\n"
    "c,Gamma,Comedy,,2020-01-02T10:00:00,z\n"
)


def test_generic_csv(tmp_path: Path) -> None:
    events = (
        "user_id,item_id,timestamp,event,value,device,junk\n"
        "u1,a,1600000000,VIEW,,mobile,1\n"
        "u1,b,2021-03-04T10:00:00Z,rating,4.5,,2\n"
        "u2,c,2021-03-04T12:00:00+02:00,Purchase,,web,3\n"
        "u2,c,2021-03-04 10:00:00,,,,4\n"
        "u2,zz,1600000001.7,click,,,5\n"
    )
    catalog = load_source(generic_dir(tmp_path, ITEMS_CSV, events), "generic")
    check_contract(catalog)
    items = catalog.items.set_index("item_id")
    assert items["title"].tolist() == ["Alpha", "b", "Gamma"]
    assert items["genres"].tolist() == [["Drama", "Crime"], [], ["Comedy"]]
    assert items["description"].tolist() == ["", "", ""] and items["tags"].tolist() == ["", "", ""]
    assert items.loc["a", "released"] == np.datetime64("2021-03-04", "s")
    assert items.loc["b", "released"] == year(2019)
    assert items.loc["c", "released"] == np.datetime64("2020-01-02T10:00:00", "s")
    assert items["series"].tolist() == ["saga", "saga", None]
    assert items.loc["b", "series_position"] == 1 and items.loc["a", "series_position"] == 2
    assert items["series_position"].isna().loc["c"]

    events_out = catalog.events
    assert catalog.unknown_item_events == 1
    assert events_out["event"].tolist() == ["view", "rating", "purchase", "view"]
    assert events_out["timestamp"].tolist() == [1600000000, 1614852000, 1614852000, 1614852000]
    assert events_out["value"].isna().tolist() == [True, False, True, True]
    assert events_out["value"].iloc[1] == 4.5
    assert events_out["device"].tolist() == ["mobile", None, "web", None]
    assert catalog.content_vectors is None and catalog.format == "generic"


def test_generic_minimal_columns_default(tmp_path: Path) -> None:
    catalog = load_source(
        generic_dir(tmp_path, "item_id\n1\n2\n", "user_id,item_id,timestamp\nu,1,5\nu,2,6\n"),
        "generic",
    )
    check_contract(catalog)
    assert catalog.items["title"].tolist() == ["1", "2"]
    assert catalog.items["series"].tolist() == [None, None]
    assert catalog.events["event"].tolist() == ["view", "view"]
    assert catalog.events["device"].tolist() == [None, None]


def test_generic_parquet_wins_and_reads_lists_and_vectors(tmp_path: Path) -> None:
    generic_dir(tmp_path, "item_id\nstale\n", "user_id,item_id,timestamp\nu,stale,1\n")
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array([10, 11, 12]),
                "genres": pa.array([["Drama", "War"], None, []], pa.list_(pa.string())),
                "series": ["s", "s", None],
                "series_position": pa.array([2, 1, None], pa.int64()),
                "content_vector": pa.array([[1.0, 2.0], None, [3.0, 4.0]], pa.list_(pa.float32())),
            }
        ),
        tmp_path / "items.parquet",
    )
    stamps = pa.array([1_600_000_000_000, 1_600_000_001_500], pa.timestamp("ms", tz="UTC"))
    pq.write_table(
        pa.table({"user_id": [1, 2], "item_id": [10, 12], "timestamp": stamps, "value": [1, 2]}),
        tmp_path / "events.parquet",
    )
    catalog = load_source(tmp_path, "generic")
    check_contract(catalog)
    assert catalog.items["item_id"].tolist() == ["10", "11", "12"]
    assert catalog.items["genres"].tolist() == [["Drama", "War"], [], []]
    assert catalog.items["series_position"].tolist()[:2] == [2.0, 1.0]
    vectors = catalog.content_vectors
    assert vectors is not None and vectors.shape == (3, 2)
    assert vectors[0].tolist() == [1.0, 2.0] and np.isnan(vectors[1]).all()
    assert catalog.events["user_id"].tolist() == ["1", "2"]
    assert catalog.events["timestamp"].tolist() == [1_600_000_000, 1_600_000_001]
    assert catalog.events["value"].tolist() == [1.0, 2.0]


# --- errors ------------------------------------------------------------------------------------

EVENTS_HEADER = "user_id,item_id,timestamp,event,value\n"


@pytest.mark.parametrize(
    ("events", "row", "column", "message"),
    [
        ("user_id,item_id\nu,a\n", None, "timestamp", "missing required column"),
        (
            EVENTS_HEADER + "u,a,1,view,\nu,a,yesterday,view,\nu,a,never,view,\n",
            2,
            "timestamp",
            "timestamp",
        ),
        (
            EVENTS_HEADER + "u,a,1,view,1\nu,a,2,view,\nu,a,3,view,lots\n",
            3,
            "value",
            "not a number",
        ),
        (EVENTS_HEADER + "u,a,1,view,\nu,a,2,like,\n", 2, "event", "unknown event type 'like'"),
        (EVENTS_HEADER + "u,a,1,view,\n,a,2,view,\n", 2, "user_id", "empty id"),
        (EVENTS_HEADER + "u,a,1,view,\nu, ,2,view,\n", 2, "item_id", "empty id"),
        (EVENTS_HEADER + "u,a,1,view,NaN\n", 1, "value", "not finite"),
        (EVENTS_HEADER + "u,a,1,view,1\nu,a,1,view,inf\n", 2, "value", "not finite"),
        (EVENTS_HEADER, None, None, "no rows"),
        ("", None, None, "empty"),
        (EVENTS_HEADER + "u,a,1,view,\nu,a,2,view,,extra\n", 2, None, "malformed CSV"),
    ],
)
def test_generic_event_errors(
    tmp_path: Path, events: str, row: int | None, column: str | None, message: str
) -> None:
    with pytest.raises(InputError) as error:
        load_source(generic_dir(tmp_path, "item_id\na\n", events), "generic")
    assert (error.value.file, error.value.row, error.value.column) == ("events.csv", row, column)
    text = str(error.value)
    assert "events.csv" in text and message in text
    if row is not None:
        assert f"row {row}" in text
    if column is not None:
        assert f"column '{column}'" in text


def test_generic_item_errors(tmp_path: Path) -> None:
    events = "user_id,item_id,timestamp\nu,a,1\n"
    with pytest.raises(
        InputError, match=re.escape("items.csv, row 3, column 'item_id': duplicate item_id 'a'")
    ):
        load_source(generic_dir(tmp_path, "item_id\na\nb\na\n", events), "generic")
    with pytest.raises(
        InputError, match=re.escape("items.csv, column 'item_id': missing required column")
    ):
        load_source(generic_dir(tmp_path, "id\na\n", events), "generic")
    with pytest.raises(InputError, match="row 2, column 'released'"):
        load_source(generic_dir(tmp_path, "item_id,released\na,2020\nb,soon\n", events), "generic")
    with pytest.raises(InputError, match="row 1, column 'series_position'"):
        load_source(
            generic_dir(tmp_path, "item_id,series,series_position\na,s,1.5\n", events), "generic"
        )


def test_generic_content_vector_dimension_mismatch(tmp_path: Path) -> None:
    vectors = pa.array([[1.0, 2.0], None, [1.0, 2.0, 3.0]], pa.list_(pa.float64()))
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "content_vector": vectors}),
        tmp_path / "items.parquet",
    )
    write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu,a,1\n")
    with pytest.raises(InputError) as error:
        load_source(tmp_path, "generic")
    assert (error.value.file, error.value.row, error.value.column) == (
        "items.parquet",
        3,
        "content_vector",
    )


def test_generic_fixed_size_vectors_and_csv_vectors(tmp_path: Path) -> None:
    vectors = pa.array([[1.0, 2.0, 3.0], None], pa.list_(pa.float32(), 3))
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "content_vector": vectors}), tmp_path / "items.parquet"
    )
    write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu,a,1\n")
    loaded = load_source(tmp_path, "generic").content_vectors
    assert loaded is not None and loaded.shape == (2, 3) and np.isnan(loaded[1]).all()
    (tmp_path / "items.parquet").unlink()
    write(tmp_path / "items.csv", "item_id,content_vector\na,1 2\n")
    with pytest.raises(InputError, match="needs a parquet file"):
        load_source(tmp_path, "generic")


def test_generic_missing_files_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape("items.csv or items.parquet")):
        load_source(tmp_path, "generic")
    write(tmp_path / "items.csv", "item_id\na\n")
    with pytest.raises(InputError, match=re.escape("events.csv or events.parquet")):
        load_source(tmp_path, "generic")
    with pytest.raises(InputError, match="allowed: movielens, generic"):
        load_source(tmp_path, "netflix")


def test_generic_bad_encoding_names_row(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id\na\n")
    (tmp_path / "events.csv").write_bytes(b"user_id,item_id,timestamp\nu,a,1\n\xff\xfe,a,2\n")
    with pytest.raises(InputError) as error:
        load_source(tmp_path, "generic")
    assert (error.value.file, error.value.row) == ("events.csv", 2)
