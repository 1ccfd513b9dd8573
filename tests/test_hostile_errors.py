"""The error tree: user-reachable failures are DiffAgentErrors with one line; no silent fallbacks."""

from __future__ import annotations

import pytest

from diffagent.errors import DiffAgentError, StoreError, UnsafeOutputError, UserInputError, one_line


def test_the_tree_and_its_exit_codes() -> None:
    assert issubclass(UnsafeOutputError, UserInputError) and issubclass(StoreError, DiffAgentError)
    assert (UserInputError.exit_code, StoreError.exit_code, DiffAgentError.exit_code) == (2, 1, 1)
    assert one_line("two\nlines\t and  more ") == "two lines and more"


def test_the_index_refuses_a_corpus_with_no_term_instead_of_refitting_silently() -> None:
    from diffagent.agents.default.index import _document_cuts
    from diffagent.agents.default.vectorize import TextVectorizer

    assert _document_cuts(3, 0.3) == {"min_df": 1, "max_df": 1.0}  # the cuts cannot apply: off, by rule
    assert _document_cuts(5000, 0.3) == {"min_df": 2, "max_df": 0.3}
    _, matrix = TextVectorizer.fit(["red car", "blue car", "green tree"], **_document_cuts(3, 0.3))
    assert matrix.shape[0] == 3
    with pytest.raises(UserInputError, match="cannot index"):  # only stop words: nothing to index
        TextVectorizer.fit(["the and of", "a an the"], stop_words="english")
    with pytest.raises(UserInputError, match="cannot index"):  # every word in one document: nothing passes
        TextVectorizer.fit([f"word{i}" for i in range(300)], **_document_cuts(300, 0.3))
