"""The error tree: user-reachable failures are DiffAgentErrors with one line; no silent fallbacks."""

from __future__ import annotations

import pytest

from diffagent.errors import DiffAgentError, StoreError, UnsafeOutputError, UserInputError, one_line


def test_the_tree_and_its_exit_codes() -> None:
    assert issubclass(UnsafeOutputError, UserInputError) and issubclass(StoreError, DiffAgentError)
    assert (UserInputError.exit_code, StoreError.exit_code, DiffAgentError.exit_code) == (2, 1, 1)
    assert one_line("two\nlines\t and  more ") == "two lines and more"


def test_the_index_refuses_a_corpus_with_no_term_instead_of_refitting_silently() -> None:
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer

    from diffagent.agents.index import _fit

    def vectorizer() -> TfidfVectorizer:
        return TfidfVectorizer(min_df=2, max_df=0.3, stop_words="english")

    assert _fit(vectorizer(), ["red car", "blue car", "green tree"]).shape[0] == 3  # cuts cannot apply: off
    with pytest.raises(UserInputError, match="no term"):
        _fit(vectorizer(), [f"word{i}" for i in range(20)])  # every word in one document: nothing passes
