"""Specification of deduplication: exact copies by normalised key, near copies by word-shingle Jaccard similarity.

The near-duplicate acceptance tests use real MedMCQA questions: planted look-alikes (whose exact shingle Jaccard
is computed here, so they are near duplicates by definition) must be found, and distinct questions must all
survive. They are skipped when ``../shared/data`` is not beside the checkout.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from aloekit.data.dedup import (
    DedupConfig,
    exact_dedup,
    jaccard,
    near_dedup,
    near_duplicate_pairs,
    normalise,
    shingles,
)
from aloekit.data.tally import Tally

MEDMCQA_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "medmcqa" / "dev.jsonl"
needs_medmcqa = pytest.mark.skipif(not MEDMCQA_DEV.is_file(), reason=f"{MEDMCQA_DEV} is not beside this checkout")

CONFIG = DedupConfig()


def text_of(record: dict) -> str:
    return record["text"]


def id_of(record: dict) -> str:
    return record["id"]


def records(*texts: str) -> list[dict]:
    return [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]


def ids(kept: list[dict]) -> list[str]:
    return [r["id"] for r in kept]


# --- normalise and exact dedup --------------------------------------------------------------------------------


def test_normalise_folds_case_accents_punctuation_and_spacing():
    assert normalise("  Anémie,\tANEMIA;  (iron-deficiency)!\n") == "anemie anemia iron deficiency"
    assert normalise("Ｆｕｌｌ-width ﬁbre") == "full width fibre"
    assert normalise("...") == ""


def test_exact_dedup_keeps_the_first_copy_in_input_order_and_counts_the_rest():
    data = records(
        "Which drug is first line for hypertension in pregnancy?",
        "What causes scurvy?",
        "which drug is FIRST-LINE for hypertension   in pregnancy",
        "What causes scurvy ?",
        "What causes rickets?",
    )
    tally = Tally()
    kept = exact_dedup(data, text_of, tally, id_of)
    assert ids(kept) == ["r0", "r1", "r4"]
    assert tally.counts[("dedup", "exact duplicate")] == 2
    assert tally.examples[("dedup", "exact duplicate")] == ["r2 = r0", "r3 = r1"]


def test_exact_dedup_keeps_texts_that_differ_in_a_word():
    data = records("Most common site of carcinoid", "Least common site of carcinoid")
    assert ids(exact_dedup(data, text_of, Tally(), id_of)) == ["r0", "r1"]


# --- near dedup: behaviour ------------------------------------------------------------------------------------


LONG = (
    "A 45 year old man presents with crushing chest pain radiating to the left arm for two hours with sweating "
    "and the ECG shows ST elevation in the inferior leads; what is the most appropriate next step in management"
)


def test_a_near_copy_is_dropped_in_favour_of_the_earlier_record_and_reported_with_its_similarity():
    edited = LONG.replace("two hours", "three hours").upper() + " (AIIMS 2015)"
    data = records("An unrelated question about vitamin C deficiency and its signs", LONG, edited)
    tally = Tally()
    kept = near_dedup(data, text_of, CONFIG, tally, id_of)
    assert ids(kept) == ["r0", "r1"]
    similarity = jaccard(shingles(edited, CONFIG.shingle), shingles(LONG, CONFIG.shingle))
    assert tally.counts[("dedup", "near duplicate")] == 1
    assert tally.examples[("dedup", "near duplicate")] == [f"r2 ~ r1 (J={similarity:.2f})"]


def test_the_first_of_a_group_is_kept_whatever_its_position():
    edited = LONG.replace("sweating", "diaphoresis")
    assert ids(near_dedup(records(edited, LONG), text_of, CONFIG, Tally(), id_of)) == ["r0"]


def test_a_record_is_only_compared_with_records_that_were_kept():
    # b is near a, c is near b but not near a: c resembles only something that was itself dropped, so it stays.
    a = [f"w{i}" for i in range(40)]
    b = [f"x{i}" if i in (5, 15, 25) else w for i, w in enumerate(a)]
    c = [f"y{i}" if i in (10, 20, 30) else w for i, w in enumerate(b)]
    a, b, c = " ".join(a), " ".join(b), " ".join(c)
    s = {name: shingles(t, CONFIG.shingle) for name, t in (("a", a), ("b", b), ("c", c))}
    assert jaccard(s["a"], s["b"]) >= 0.72 and jaccard(s["b"], s["c"]) >= 0.72 and jaccard(s["a"], s["c"]) < 0.72
    pairs = near_duplicate_pairs(records(a, b, c), text_of, CONFIG)
    assert [(p.dropped, p.kept) for p in pairs] == [(1, 0)]


def test_pairs_just_below_the_threshold_are_never_dropped():
    # LSH proposes candidates; confirmation on the exact shingle sets means no false positive drops a record.
    rng = random.Random(1)
    vocabulary = [f"w{i}" for i in range(5000)]
    data, below = [], 0
    for _ in range(200):
        words = rng.sample(vocabulary, 40)
        other = list(words)
        for position in rng.sample(range(40), 4):
            other[position] = rng.choice(vocabulary)
        similarity = jaccard(shingles(" ".join(words), 2), shingles(" ".join(other), 2))
        if 0.5 <= similarity < CONFIG.threshold:
            below += 1
            data += [
                {"id": f"{len(data)}", "text": " ".join(words)},
                {"id": f"{len(data) + 1}", "text": " ".join(other)},
            ]
    assert below > 100
    assert near_duplicate_pairs(data, text_of, CONFIG) == []


def test_texts_too_short_for_a_shingle_still_work():
    data = records("Scurvy", "scurvy!", "Rickets", "", "", "Vitamin C", "vitamin   c.", "Vitamin D")
    kept = near_dedup(data, text_of, CONFIG, Tally(), id_of)
    # Identical after normalisation: duplicates; one word apart: not; empty texts are left to exact dedup.
    assert ids(kept) == ["r0", "r2", "r3", "r4", "r5", "r7"]


def test_near_dedup_is_deterministic():
    data = records(LONG, LONG.replace("inferior", "anterior"), "Another question", LONG + " Explain.")
    first = near_duplicate_pairs(data, text_of, CONFIG)
    assert first == near_duplicate_pairs(data, text_of, CONFIG)
    assert [(p.dropped, p.kept) for p in first] == [(1, 0), (3, 0)]


def test_a_longer_shingle_is_stricter_on_short_texts():
    a, b = "Drug of choice for absence seizures in children", "Drug of choice for absence seizures in adults"
    assert jaccard(shingles(a, 1), shingles(b, 1)) > jaccard(shingles(a, 2), shingles(b, 2))
    assert jaccard(shingles(a, 2), shingles(b, 2)) > jaccard(shingles(a, 3), shingles(b, 3))


def test_the_config_validates_and_documents_every_field():
    with pytest.raises(ValidationError):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValidationError):
        DedupConfig(shingles=3)
    assert all(field.description for field in DedupConfig.model_fields.values())


# --- near dedup: acceptance on real questions ------------------------------------------------------------------


Question = tuple[str, tuple[str, ...]]


def _medmcqa_questions() -> list[Question]:
    with MEDMCQA_DEV.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["question"], (r["opa"], r["opb"], r["opc"], r["opd"])) for r in rows]


def _text(question: str, options: tuple[str, ...]) -> str:
    """What a pipeline would compare for a multiple-choice item: the question and its options."""
    return " ".join((question, *options))


def _distinct(items: list[Question], limit: int) -> list[Question]:
    """The first ``limit`` items whose exact pairwise shingle Jaccard with every earlier pick is below 0.5."""
    picked: list[tuple[Question, set[str]]] = []
    for item in items:
        grams = shingles(_text(*item), CONFIG.shingle)
        if all(jaccard(grams, other) < 0.5 for _, other in picked):
            picked.append((item, grams))
            if len(picked) == limit:
                break
    return [item for item, _ in picked]


def _edit(item: Question, rng: random.Random, vocabulary: list[str]) -> str:
    """A realistic near copy: one or two of the edits seen when a question is re-posted or re-scraped."""
    words, options = item[0].split(), list(item[1])
    for edit in rng.sample(range(7), rng.choice((1, 2))):
        if edit == 0:  # case
            words = [w.upper() if rng.random() < 0.5 else w.lower() for w in words]
        elif edit == 1:  # punctuation and spacing
            words = [w.rstrip(".,:;?") + rng.choice(("", ",", " ", " .", ":")) for w in words]
        elif edit == 2:  # a word substituted
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        elif edit == 3:  # a word or two deleted
            for _ in range(rng.choice((1, 2))):
                del words[rng.randrange(len(words))]
        elif edit == 4:  # a phrase appended
            words += rng.choice((["(AIIMS", "2015)"], ["explain", "your", "answer"], ["-", "NEET", "PG"]))
        elif edit == 5:  # a word inserted
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
        else:  # two options in the other order
            i = rng.randrange(len(options) - 1)
            options[i], options[i + 1] = options[i + 1], options[i]
    return rng.choice((" ", "  ", "\n")).join([*words, *options])


@pytest.fixture(scope="module")
def distinct_questions() -> list[Question]:
    if not MEDMCQA_DEV.is_file():
        pytest.skip(f"{MEDMCQA_DEV} is not beside this checkout")
    long_enough = [item for item in _medmcqa_questions() if len(item[0].split()) >= 15]
    return _distinct(long_enough, 400)


@needs_medmcqa
def test_planted_near_duplicates_are_found_at_95_percent_recall(distinct_questions):
    rng = random.Random(0)
    originals = distinct_questions[:300]
    vocabulary = sorted({w for question, _ in distinct_questions for w in question.split()})
    planted = []
    for index, original in enumerate(originals):
        copy = _edit(original, rng, vocabulary)
        if jaccard(shingles(copy, CONFIG.shingle), shingles(_text(*original), CONFIG.shingle)) >= CONFIG.threshold:
            planted.append((index, copy))
    assert len(planted) >= 200, "too few edits stay near duplicates for a meaningful recall"
    copies = [{"id": f"copy-of-{i}", "text": t, "original": i} for i, t in planted]
    rng.shuffle(copies)
    data = [{"id": f"q{i}", "text": _text(*item)} for i, item in enumerate(originals)] + copies

    pairs = near_duplicate_pairs(data, text_of, CONFIG)
    found = {p.dropped: p.kept for p in pairs}
    first_copy = len(originals)
    recall = sum(i in found for i in range(first_copy, len(data))) / len(copies)
    print(f"near-dedup recall {recall:.3f} on {len(copies)} planted near duplicates")
    assert recall >= 0.95, f"recall {recall:.3f} on {len(copies)} planted near duplicates"
    # Every drop is a planted copy, matched to its own original.
    assert all(dropped >= first_copy and kept == data[dropped]["original"] for dropped, kept in found.items())


@needs_medmcqa
def test_distinct_questions_all_survive(distinct_questions):
    assert len(distinct_questions) == 400
    texts = [_text(*item) for item in distinct_questions]
    assert max(jaccard(shingles(a, 2), shingles(b, 2)) for a, b in itertools.combinations(texts[:50], 2)) < 0.5
    data = [{"id": f"q{i}", "text": t} for i, t in enumerate(texts)]
    tally = Tally()
    assert near_dedup(data, text_of, CONFIG, tally, id_of) == data
    assert tally.total() == 0
