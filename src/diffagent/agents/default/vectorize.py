"""Bag-of-n-gram vectors of text, fitted with scikit-learn and applied without it.

The default agent fits its vocabularies once per catalogue revision and then answers prompts for as long as
the cache lives. scikit-learn takes 1-2 s to import, more than the whole answer budget of a warm
``diffagent select``, so :class:`TextVectorizer` keeps what a fitted ``TfidfVectorizer`` or
``CountVectorizer`` learned (vocabulary, idf, options) as plain data and reproduces its ``transform``
with numpy and scipy (the same analyzers, tf weighting and norms; a test holds the two equal).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from ...errors import UserInputError

__all__ = ["TextVectorizer", "strictly_sorted"]

_WHITE_SPACES = re.compile(r"\s\s+")


def strictly_sorted(terms: Sequence[str]) -> bool:
    """Whether ``terms`` are in strictly increasing order (see :attr:`TextVectorizer.terms_sorted`)."""
    return all(a < b for a, b in itertools.pairwise(terms))


@dataclass
class TextVectorizer:
    """What a fitted scikit-learn text vectorizer knows, and its ``transform``."""

    terms: list[str]
    """The vocabulary, in column order."""
    idf: np.ndarray | None
    """Inverse document frequencies (None for raw counts)."""
    analyzer: str
    """``word`` or ``char_wb``."""
    ngram_range: tuple[int, int]
    token_pattern: str
    stop_words: list[str]
    sublinear_tf: bool
    binary: bool
    norm: str | None
    terms_sorted: bool = False
    """Whether ``terms`` are in sorted order (as scikit-learn numbers them): then a binary search finds a
    column, and loading a cached vectorizer builds no dict of 100,000 terms. Checked once, when fitted."""

    @classmethod
    def fit(cls, texts: Sequence[str], *, tfidf: bool = True, **options: Any) -> tuple[TextVectorizer, Any]:
        """Fit a scikit-learn vectorizer on ``texts`` (``options`` are its own); returns this and the
        fitted document matrix. A corpus left without any term by the document-frequency cuts is an error
        rather than a silent refit without them."""
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        fitted = (TfidfVectorizer if tfidf else CountVectorizer)(dtype=np.float32, **options)
        try:
            matrix = fitted.fit_transform(list(texts)).tocsr()
        except ValueError as exc:  # "After pruning, no terms remain", "empty vocabulary"
            raise UserInputError(f"cannot index {len(texts)} texts: {exc}") from exc
        return cls.of(fitted), matrix

    @classmethod
    def of(cls, fitted: Any) -> TextVectorizer:
        """The plain-data copy of a fitted (or vocabulary-given) scikit-learn vectorizer."""
        if callable(fitted.analyzer) or fitted.analyzer not in ("word", "char_wb"):
            raise UserInputError(f"unsupported analyzer {fitted.analyzer!r}")
        if fitted.preprocessor is not None or fitted.tokenizer is not None or fitted.strip_accents:
            raise UserInputError("custom preprocessing cannot be reproduced without scikit-learn")
        if not fitted.lowercase:
            raise UserInputError("only lower-casing vectorizers are supported")
        if not hasattr(fitted, "vocabulary_"):
            fitted._validate_vocabulary()
        stop = fitted.get_stop_words() if fitted.analyzer == "word" else None
        idf = getattr(fitted, "idf_", None) if getattr(fitted, "use_idf", False) else None
        terms = [term for term, _ in sorted(fitted.vocabulary_.items(), key=lambda item: item[1])]
        return cls(
            terms=terms,
            idf=None if idf is None else np.asarray(idf, dtype=np.float32),
            analyzer=fitted.analyzer,
            ngram_range=(int(fitted.ngram_range[0]), int(fitted.ngram_range[1])),
            token_pattern=fitted.token_pattern or r"(?u)\b\w\w+\b",
            stop_words=sorted(stop or ()),
            sublinear_tf=bool(getattr(fitted, "sublinear_tf", False)),
            binary=bool(fitted.binary),
            norm=getattr(fitted, "norm", None),
            terms_sorted=strictly_sorted(terms),
        )

    def __post_init__(self) -> None:
        self._token = re.compile(self.token_pattern)
        self._stop = frozenset(self.stop_words)
        self._columns = (
            None if self.terms_sorted else {term: column for column, term in enumerate(self.terms)}
        )

    def column(self, term: str) -> int | None:
        """The column of ``term``, or None when it is not in the vocabulary."""
        if self._columns is not None:
            return self._columns.get(term)
        at = bisect.bisect_left(self.terms, term)
        return at if at < len(self.terms) and self.terms[at] == term else None

    def _terms(self, text: str) -> list[str]:
        text = text.lower()
        low, high = self.ngram_range
        if self.analyzer == "char_wb":
            grams: list[str] = []
            for word in _WHITE_SPACES.sub(" ", text).split():
                word = f" {word} "
                for n in range(low, high + 1):
                    if len(word) <= n:  # a word no longer than n counts once, and longer n-grams not
                        grams.append(word)
                        break
                    grams += [word[i : i + n] for i in range(len(word) - n + 1)]
            return grams
        tokens = [t for t in self._token.findall(text) if t not in self._stop]
        grams = list(tokens) if low == 1 else []
        for n in range(max(low, 2), min(high, len(tokens)) + 1):
            grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return grams

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Documents x terms, as the scikit-learn vectorizer's ``transform`` gives it (float32)."""
        if self._columns is None and len(texts) > 1:
            # a batch looks up many terms: a dict once beats a bisection per term (one prompt keeps the
            # bisection, so that a warm select does not build it)
            self._columns = {term: column for column, term in enumerate(self.terms)}
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        find = self._columns.get if self._columns is not None else self.column
        for text in texts:
            counts: dict[int, int] = {}
            for gram in self._terms(text):
                column = find(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            for column in sorted(counts):
                indices.append(column)
                values.append(counts[column])
            indptr.append(len(indices))
        data = np.array(values, dtype=np.float32)
        if self.binary:
            data[:] = 1.0
        elif self.sublinear_tf:
            np.log(data, out=data)
            data += 1.0
        matrix = sparse.csr_matrix(
            (data, np.array(indices, dtype=np.int32), np.array(indptr, dtype=np.int32)),
            shape=(len(texts), len(self.terms)),
        )
        if self.idf is not None:
            matrix.data *= self.idf[matrix.indices]
        if self.norm == "l2":
            lengths = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
            lengths[lengths == 0] = 1.0
            matrix.data /= np.repeat(lengths, np.diff(matrix.indptr)).astype(np.float32)
        elif self.norm == "l1":
            lengths = np.asarray(abs(matrix).sum(axis=1)).ravel()
            lengths[lengths == 0] = 1.0
            matrix.data /= np.repeat(lengths, np.diff(matrix.indptr)).astype(np.float32)
        return matrix
