"""The text index's words (storage/text_search.py) come from PyStemmer, the C build of the Snowball stemmers
that snowballstemmer hands over to when it is installed (a dependency: the pure-Python one costs a digest
~25 ms and stems a word ~30x slower), and they are the Snowball English stems the index was built with."""

from __future__ import annotations

from storage import text_search


def test_the_stemmer_is_the_c_build_and_stems_as_snowball_english() -> None:
    assert type(text_search._stemmer()).__module__ == "Stemmer"
    assert text_search.words("Timeouts: failing and failed payments, 502 errors on the DB") == {
        "timeout": "timeouts", "fail": "failing", "payment": "payments", "502": "502", "error": "errors",
        "db": "db"}
