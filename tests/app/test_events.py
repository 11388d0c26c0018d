import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.events import EVENT_TYPES, event_weights, is_positive


def test_known_weights_on_five_star_scale():
    kinds = np.array(["rating"] * 5 + ["view", "click", "purchase", "dismiss"], dtype=object)
    values = np.array([1.0, 2.5, 3.0, 4.0, 5.0, np.nan, np.nan, np.nan, np.nan])
    w = event_weights(kinds, values, 5.0)
    np.testing.assert_allclose(w, [0, 0, 0.6, 1.8, 3.0, 1.0, 1.5, 3.0, 0.0], atol=1e-6)
    assert is_positive(kinds, values).tolist() == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        False,
    ]


def test_ten_point_scale_is_relative():
    w = event_weights(np.array(["rating", "rating"], dtype=object), np.array([8.0, 4.0]), 10.0)
    assert w[0] == event_weights(np.array(["rating"], dtype=object), np.array([4.0]), 5.0)[0]
    assert w[1] == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(EVENT_TYPES), st.floats(allow_nan=True, allow_infinity=False)),
        max_size=50,
    )
)
def test_weights_never_negative_and_rating_monotone(rows):
    kinds = np.array([k for k, _ in rows], dtype=object)
    values = np.array([v for _, v in rows], dtype=float)
    w = event_weights(kinds, values)
    assert (w >= 0).all() and (w <= 3.0).all()
    ratings = np.linspace(0, 5, 11)
    rw = event_weights(np.array(["rating"] * 11, dtype=object), ratings)
    assert (np.diff(rw) >= 0).all()
