"""Dispute category suggestion: a naive Bayes text model trained on the firm's own disputes.

The text of a dispute is its description plus the lines it names (their descriptions and kinds). Training
uses scikit-learn (`CountVectorizer` with this module's tokenizer, `MultinomialNB`) and keeps only numbers:
the vocabulary, the class priors and the per-word log-probabilities, stored as JSON on
`DisputeClassifier` (no pickled objects). Suggesting reads them back in plain Python, so the words that
drove a suggestion are the ones with the largest log-likelihood ratio for the suggested category.

Advice only (docs/rules/assistive.md): the suggestion is shown beside the category field; the person
chooses the category, and nothing sets it from the suggestion.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

_STOP = (
    "a about above after again against all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having he her "
    "here hers him his how i if in into is it its itself just me more most my no nor not of off on once only or "
    "other our ours out over own same she should so some such than that the their them then there these they "
    "this those through to too under until up very was we were what when where which while who whom why will "
    "with would you your yours please kindly dear regards thanks thank hello hi invoice invoices"
)
STOP_WORDS = frozenset(_STOP.split())


def tokens(text: str) -> list[str]:
    """Lower-case words of 2+ letters (digits kept inside codes), without stop words, plus word pairs."""
    words = [w for w in re.findall(r"[a-z][a-z0-9']+", text.lower()) if w not in STOP_WORDS]
    words = [w.rstrip("'s") if w.endswith("'s") else w for w in words]
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def dispute_text(description: str, lines: Iterable[tuple[str, str]] = ()) -> str:
    """The text the model reads: the description, then each named line as "line <kind> <description>"."""
    parts = [description or ""]
    parts += [f"line {kind or ''} {text or ''}" for kind, text in lines]
    return "\n".join(parts)


@dataclass(frozen=True)
class Suggestion:
    category: str
    confidence: float
    words: list[str] = field(default_factory=list)
    alternatives: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Trained:
    parameters: dict
    samples: int
    accuracy: float | None
    baseline_accuracy: float | None
    test_samples: int
    per_class: dict
    majority: str


def _fit(texts: Sequence[str], labels: Sequence[str], alpha: float) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB

    vectorizer = CountVectorizer(analyzer=tokens, min_df=1)
    x = vectorizer.fit_transform(texts)
    model = MultinomialNB(alpha=alpha).fit(x, labels)
    vocabulary = {word: int(i) for word, i in vectorizer.vocabulary_.items()}
    return {
        "classes": [str(c) for c in model.classes_],
        "class_log_prior": [float(v) for v in model.class_log_prior_],
        "feature_log_prob": [[round(float(v), 6) for v in row] for row in model.feature_log_prob_],
        "vocabulary": vocabulary,
        "alpha": alpha,
    }


def train(
    texts: Sequence[str], labels: Sequence[str], *, test_share: float = 0.25, seed: int = 0, alpha: float = 0.5
) -> Trained:
    """Fit on a stratified training part, score on the held-out part (accuracy against always answering the
    training part's most common category), then refit on everything for use."""
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    stratify = labels if min(counts.values()) >= 2 and len(counts) > 1 else None
    accuracy = baseline = None
    test_samples = 0
    per_class: dict = {}
    majority = counts.most_common(1)[0][0]
    if len(labels) >= 8 and len(counts) > 1:
        x_train, x_test, y_train, y_test = train_test_split(
            list(texts), list(labels), test_size=test_share, random_state=seed, stratify=stratify
        )
        held_out = _fit(x_train, y_train, alpha)
        predicted = [suggest(held_out, text).category for text in x_test]
        train_majority = Counter(y_train).most_common(1)[0][0]
        test_samples = len(y_test)
        accuracy = sum(p == y for p, y in zip(predicted, y_test, strict=True)) / test_samples
        baseline = sum(y == train_majority for y in y_test) / test_samples
        for category in sorted(set(y_test)):
            right = sum(1 for p, y in zip(predicted, y_test, strict=True) if y == category and p == category)
            total = sum(1 for y in y_test if y == category)
            per_class[category] = {"test_samples": total, "recall": round(right / total, 3)}
    return Trained(_fit(texts, labels, alpha), len(labels), accuracy, baseline, test_samples, per_class, majority)


def suggest(parameters: dict, text: str, *, top_words: int = 5) -> Suggestion:
    """The most likely category of `text`, its probability, and the words that pushed it there."""
    classes = parameters["classes"]
    vocabulary = parameters["vocabulary"]
    log_prob = parameters["feature_log_prob"]
    counts = Counter(t for t in tokens(text) if t in vocabulary)
    scores = []
    for k, prior in enumerate(parameters["class_log_prior"]):
        scores.append(prior + sum(n * log_prob[k][vocabulary[t]] for t, n in counts.items()))
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    probabilities = [e / total for e in exp]
    best = max(range(len(classes)), key=lambda k: probabilities[k])
    others = [k for k in range(len(classes)) if k != best]
    drivers = []
    for t, n in counts.items():
        i = vocabulary[t]
        rest = max((log_prob[k][i] for k in others), default=log_prob[best][i])
        drivers.append((n * (log_prob[best][i] - rest), t))
    words = [t for weight, t in sorted(drivers, reverse=True) if weight > 0][:top_words]
    ranked = sorted(((classes[k], round(probabilities[k], 3)) for k in others), key=lambda c: -c[1])[:2]
    return Suggestion(classes[best], round(probabilities[best], 3), words, ranked)
